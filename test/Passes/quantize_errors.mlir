// Requests tfm-quantize refuses, each with one message.
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w3a16" 2>&1 | FileCheck %s --check-prefix=SCHEME
// SCHEME: error: tfm-quantize: scheme must be w4a16, w8a16, w8a8 or fp8, got 'w3a16'
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w4a16 method=hqq" 2>&1 | FileCheck %s --check-prefix=METHOD
// METHOD: error: tfm-quantize: method must be rtn, awq or gptq, got 'hqq'
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w8a16 method=gptq" 2>&1 | FileCheck %s --check-prefix=W8GPTQ
// W8GPTQ: error: tfm-quantize: method gptq is for w4a16; w8a16 rounds to nearest
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w4a16 act-order=true" 2>&1 | FileCheck %s --check-prefix=ACTORDER
// ACTORDER: error: tfm-quantize: act-order is a gptq option
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w8a8 smooth-alpha=1.5" 2>&1 | FileCheck %s --check-prefix=ALPHA
// ALPHA: error: tfm-quantize: smooth-alpha must be at most 1, got 1.5
// RUN: not optmlir-opt %s -tfm-quantize="scheme=fp8 fp8-weight-scale=block" 2>&1 | FileCheck %s --check-prefix=FP8W
// FP8W: error: tfm-quantize: fp8-weight-scale must be channel or tensor, got 'block'
// RUN: not optmlir-opt %s -tfm-quantize="scheme=fp8 fp8-activation-scale=per-token" 2>&1 | FileCheck %s --check-prefix=FP8A
// FP8A: error: tfm-quantize: fp8-activation-scale must be dynamic or static, got 'per-token'
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w4a16 exclude=(" 2>&1 | FileCheck %s --check-prefix=REGEX
// REGEX: error: tfm-quantize: exclude is not a valid regex
// The first linear whose input features the group does not divide.
// RUN: not optmlir-opt %s -tfm-quantize="scheme=w4a16 group-size=48" 2>&1 | FileCheck %s --check-prefix=GROUP
// GROUP: error: 'tfm.linear' op tfm-quantize: layer.down.weight: group size 48 does not divide the 64 input features
// GROUP-NOT: error:
// Static fp8 scales come from calibration, which needs weight data.
// RUN: not optmlir-opt %s -tfm-quantize="scheme=fp8 fp8-activation-scale=static" 2>&1 | FileCheck %s --check-prefix=STATIC
// STATIC: error: 'tfm.linear' op tfm-quantize: static fp8 activation scales come from calibration, which a model without weight data cannot have

tfm.weight @layer.down.weight : tensor<32x64xbf16>
tfm.weight @layer.up.weight : tensor<64x32xbf16>

func.func @mlp(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %d = tfm.get_weight @layer.down.weight : tensor<32x64xbf16>
  %y = tfm.linear %x, %d : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %u = tfm.get_weight @layer.up.weight : tensor<64x32xbf16>
  %z = tfm.linear %y, %u : (tensor<?x32xbf16>, tensor<64x32xbf16>) -> tensor<?x64xbf16>
  return %z : tensor<?x64xbf16>
}
