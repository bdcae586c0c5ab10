// RUN: optmlir-opt %s -tfm-kv-layout -split-input-file | FileCheck %s
// RUN: optmlir-opt %s -tfm-kv-layout="element-type=fp8e4m3 block-size=32" -split-input-file | FileCheck %s --check-prefix=FP8
// RUN: optmlir-opt %s -tfm-kv-layout="element-type=int8" -split-input-file | FileCheck %s --check-prefix=INT8
// RUN: not optmlir-opt %s -tfm-kv-layout="block-size=12" 2>&1 | FileCheck %s --check-prefix=BLOCK
// RUN: not optmlir-opt %s -tfm-kv-layout="element-type=int3" 2>&1 | FileCheck %s --check-prefix=TYPE

// Both layers' attention gets one cache: 2 layers, the keys' 2 kv heads of
// 64, 16 tokens a block, the activation type (bf16) by default.
// CHECK-LABEL: func.func @two_layers
// CHECK: tfm.attention {{.*}} causal kv_cache !tfm.kv_cache<layers = 2, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16> :
// CHECK: tfm.attention {{.*}} causal sliding_window 4096 kv_cache !tfm.kv_cache<layers = 2, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16> :
// FP8-LABEL: func.func @two_layers
// FP8-COUNT-2: kv_cache !tfm.kv_cache<layers = 2, kv_heads = 2, head_dim = 64, block_size = 32, element_type = f8E4M3FN>
// BLOCK: error: tfm-kv-layout: block-size must be a power of two up to 1024, got 12
// INT8-LABEL: func.func @two_layers
// INT8-COUNT-2: kv_cache !tfm.kv_cache<layers = 2, kv_heads = 2, head_dim = 64, block_size = 16, element_type = i8>
// TYPE: error: tfm-kv-layout: element-type must be native, fp8e4m3 or int8, got 'int3'
func.func @two_layers(%q: tensor<?x6x64xbf16>, %k: tensor<?x2x64xbf16>, %v: tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16> {
  %a = tfm.attention %q, %k, %v scale 1.250000e-01 causal : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
  %b = tfm.attention %a, %k, %v scale 1.250000e-01 causal sliding_window 4096 : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
  return %b : tensor<?x6x64xbf16>
}
