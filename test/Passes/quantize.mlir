// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=w4a16 group-size=32" | FileCheck %s --check-prefix=W4
// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=w4a16 group-size=64 symmetric=true" | FileCheck %s --check-prefix=SYM
// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=w8a16" | FileCheck %s --check-prefix=W8
// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=w8a8 smooth=false" | FileCheck %s --check-prefix=W8A8
// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=fp8" | FileCheck %s --check-prefix=FP8
// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=fp8 fp8-weight-scale=tensor" | FileCheck %s --check-prefix=FP8T
// RUN: optmlir-opt %s -split-input-file -tfm-quantize="scheme=w8a16 exclude=" | FileCheck %s --check-prefix=ALL

// The module names no checkpoint, so the weight store has no data (as with
// --random-weights): the rewrite is the same, and no data is computed.
// Linears reading declared weights become quantized_linear over weights
// derived from theirs; lm_head stays unless `exclude` says otherwise.

tfm.weight @layer.qkv.weight : tensor<96x64xbf16>
tfm.weight @layer.qkv.bias : tensor<96xbf16>
tfm.weight @lm_head.weight : tensor<256x64xbf16>

// The new weights follow the one they come from, in order.
// W4: tfm.weight @layer.qkv.weight : tensor<96x64xbf16>
// W4-NEXT: tfm.weight @layer.qkv.weight.qvalues : tensor<96x64xi4> derived_from @layer.qkv.weight
// W4-NEXT: tfm.weight @layer.qkv.weight.qscales : tensor<96x2xf16> derived_from @layer.qkv.weight
// W4-NEXT: tfm.weight @layer.qkv.weight.qzeros : tensor<96x2xui8> derived_from @layer.qkv.weight

// W4-LABEL: func.func @linears
// W4: %[[V:.*]] = tfm.get_weight @layer.qkv.weight.qvalues : tensor<96x64xi4>
// W4: %[[S:.*]] = tfm.get_weight @layer.qkv.weight.qscales : tensor<96x2xf16>
// W4: %[[Z:.*]] = tfm.get_weight @layer.qkv.weight.qzeros : tensor<96x2xui8>
// W4: %[[Q:.*]] = tfm.quantized_linear %{{.*}}, %[[V]] scales %[[S]] zeros %[[Z]] : (tensor<?x64xbf16>, tensor<96x64xi4>, tensor<96x2xf16>, tensor<96x2xui8>) -> tensor<?x96xbf16>
// The bias is added after the quantized product.
// W4: %[[B:.*]] = tfm.add %[[Q]], %{{.*}} : (tensor<?x96xbf16>, tensor<96xbf16>) -> tensor<?x96xbf16>
// W4: tfm.linear %{{.*}}, %{{.*}} : (tensor<?x64xbf16>, tensor<256x64xbf16>) -> tensor<?x256xbf16>
// W4: return %[[B]],

// SYM-LABEL: func.func @linears
// SYM-NOT: qzeros
// SYM: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} : (tensor<?x64xbf16>, tensor<96x64xi4>, tensor<96x1xf16>) -> tensor<?x96xbf16>

// W8-LABEL: func.func @linears
// W8: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} : (tensor<?x64xbf16>, tensor<96x64xi8>, tensor<96x1xf32>) -> tensor<?x96xbf16>

// W8A8-LABEL: func.func @linears
// W8A8: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} activations int8_per_token : (tensor<?x64xbf16>, tensor<96x64xi8>, tensor<96x1xf32>) -> tensor<?x96xbf16>

// FP8-LABEL: func.func @linears
// FP8: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} activations fp8_dynamic : (tensor<?x64xbf16>, tensor<96x64xf8E4M3FN>, tensor<96x1xf32>) -> tensor<?x96xbf16>

// FP8T-LABEL: func.func @linears
// FP8T: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} activations fp8_dynamic : (tensor<?x64xbf16>, tensor<96x64xf8E4M3FN>, tensor<1x1xf32>) -> tensor<?x96xbf16>

// ALL-LABEL: func.func @linears
// ALL-NOT: tfm.linear
// ALL: tfm.get_weight @lm_head.weight.qvalues : tensor<256x64xi8>
func.func @linears(%x: tensor<?x64xbf16>) -> (tensor<?x96xbf16>, tensor<?x256xbf16>) {
  %w = tfm.get_weight @layer.qkv.weight : tensor<96x64xbf16>
  %b = tfm.get_weight @layer.qkv.bias : tensor<96xbf16>
  %y = tfm.linear %x, %w bias %b : (tensor<?x64xbf16>, tensor<96x64xbf16>, tensor<96xbf16>) -> tensor<?x96xbf16>
  %h = tfm.get_weight @lm_head.weight : tensor<256x64xbf16>
  %l = tfm.linear %x, %h : (tensor<?x64xbf16>, tensor<256x64xbf16>) -> tensor<?x256xbf16>
  return %y, %l : tensor<?x96xbf16>, tensor<?x256xbf16>
}

// -----

// A linear whose weight is an argument, not a declared weight, stays.
// W4-LABEL: func.func @argument_weight
// W4: tfm.linear
// W4-NOT: tfm.quantized_linear
func.func @argument_weight(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) -> tensor<?x8xbf16> {
  %y = tfm.linear %x, %w : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> tensor<?x8xbf16>
  return %y : tensor<?x8xbf16>
}
