// RUN: optmlir-opt %s | optmlir-opt | FileCheck %s
// RUN: optmlir-opt %s --mlir-print-op-generic | optmlir-opt | FileCheck %s

// Round trip of every tfm op, type and attribute, in the custom form and
// through the generic form.

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

// CHECK: tfm.weight @model.embed_tokens.weight : tensor<256x64xbf16>
tfm.weight @model.embed_tokens.weight : tensor<256x64xbf16>
// CHECK: tfm.weight @model.norm.weight : tensor<64xbf16>
tfm.weight @model.norm.weight : tensor<64xbf16>
// CHECK: tfm.weight @q.weight : tensor<64x64xbf16>
tfm.weight @q.weight : tensor<64x64xbf16>
// CHECK: tfm.weight @k.weight : tensor<16x64xbf16>
tfm.weight @k.weight : tensor<16x64xbf16>
// CHECK: tfm.weight @v.weight : tensor<16x64xbf16>
tfm.weight @v.weight : tensor<16x64xbf16>
// CHECK: tfm.weight @qkv.weight : tensor<96x64xbf16> = concat [@q.weight, @k.weight, @v.weight] dim 0
tfm.weight @qkv.weight : tensor<96x64xbf16>
    = concat [@q.weight, @k.weight, @v.weight] dim 0
// Concatenation along a dimension other than 0, of a weight that is itself a
// concatenation.
// CHECK: tfm.weight @wide.weight : tensor<96x128xbf16> = concat [@qkv.weight, @qkv.weight] dim 1
tfm.weight @wide.weight : tensor<96x128xbf16>
    = concat [@qkv.weight, @qkv.weight] dim 1

// A pass computed these from @qkv.weight (tfm-quantize): the data are in the
// weight store.
// CHECK: tfm.weight @qkv.weight.q4 : tensor<96x64xi4> derived_from @qkv.weight
tfm.weight @qkv.weight.q4 : tensor<96x64xi4> derived_from @qkv.weight
// CHECK: tfm.weight @qkv.weight.scales : tensor<96x2xf16> derived_from @qkv.weight
tfm.weight @qkv.weight.scales : tensor<96x2xf16> derived_from @qkv.weight

// CHECK-LABEL: func.func @get_weight
// CHECK: %[[N:.*]] = tfm.get_weight @model.norm.weight : tensor<64xbf16>
// CHECK: %[[F:.*]] = tfm.get_weight @qkv.weight : tensor<96x64xbf16>
// CHECK: return %[[N]], %[[F]]
func.func @get_weight() -> (tensor<64xbf16>, tensor<96x64xbf16>) {
  %0 = tfm.get_weight @model.norm.weight : tensor<64xbf16>
  %1 = tfm.get_weight @qkv.weight : tensor<96x64xbf16>
  return %0, %1 : tensor<64xbf16>, tensor<96x64xbf16>
}

//===----------------------------------------------------------------------===//
// High-level ops
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @embed
// CHECK-SAME: (%[[IDS:.*]]: tensor<?xi32>, %[[IDS64:.*]]: tensor<5xi64>)
// CHECK: %[[T:.*]] = tfm.get_weight @model.embed_tokens.weight
// CHECK: %[[E:.*]] = tfm.embed %[[IDS]], %[[T]] : (tensor<?xi32>, tensor<256x64xbf16>) -> tensor<?x64xbf16>
// CHECK: %[[E64:.*]] = tfm.embed %[[IDS64]], %[[T]] : (tensor<5xi64>, tensor<256x64xbf16>) -> tensor<5x64xbf16>
// CHECK: return %[[E]], %[[E64]]
func.func @embed(%ids: tensor<?xi32>, %ids64: tensor<5xi64>) -> (tensor<?x64xbf16>, tensor<5x64xbf16>) {
  %table = tfm.get_weight @model.embed_tokens.weight : tensor<256x64xbf16>
  %0 = tfm.embed %ids, %table : (tensor<?xi32>, tensor<256x64xbf16>) -> tensor<?x64xbf16>
  %1 = tfm.embed %ids64, %table : (tensor<5xi64>, tensor<256x64xbf16>) -> tensor<5x64xbf16>
  return %0, %1 : tensor<?x64xbf16>, tensor<5x64xbf16>
}

// CHECK-LABEL: func.func @rms_norm
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<64xbf16>, %[[H:.*]]: tensor<?x4x16xf32>, %[[HW:.*]]: tensor<16xf32>)
// CHECK: %[[Y:.*]] = tfm.rms_norm %[[X]], %[[W]] eps 9.9999999999999995E-7 : (tensor<?x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
// CHECK: %[[Z:.*]] = tfm.rms_norm %[[H]], %[[HW]] eps 1.000000e-05 : (tensor<?x4x16xf32>, tensor<16xf32>) -> tensor<?x4x16xf32>
// CHECK: return %[[Y]], %[[Z]]
func.func @rms_norm(%x: tensor<?x64xbf16>, %w: tensor<64xbf16>, %h: tensor<?x4x16xf32>, %hw: tensor<16xf32>) -> (tensor<?x64xbf16>, tensor<?x4x16xf32>) {
  %0 = tfm.rms_norm %x, %w eps 1.0e-06 : (tensor<?x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
  // Per-head normalisation of a rank-3 tensor.
  %1 = tfm.rms_norm %h, %hw eps 1.0e-05 : (tensor<?x4x16xf32>, tensor<16xf32>) -> tensor<?x4x16xf32>
  return %0, %1 : tensor<?x64xbf16>, tensor<?x4x16xf32>
}

// CHECK-LABEL: func.func @linear_no_bias
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<16x64xbf16>)
// CHECK: %[[Y:.*]] = tfm.linear %[[X]], %[[W]] : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> tensor<?x16xbf16>
// CHECK-NOT: bias
// CHECK: return %[[Y]]
func.func @linear_no_bias(%x: tensor<?x64xbf16>, %w: tensor<16x64xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.linear %x, %w : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> tensor<?x16xbf16>
  return %0 : tensor<?x16xbf16>
}

// CHECK-LABEL: func.func @linear_bias
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<16x64xbf16>, %[[B:.*]]: tensor<16xbf16>)
// CHECK: %[[Y:.*]] = tfm.linear %[[X]], %[[W]] bias %[[B]] : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>) -> tensor<?x16xbf16>
// CHECK: return %[[Y]]
func.func @linear_bias(%x: tensor<?x64xbf16>, %w: tensor<16x64xbf16>, %b: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.linear %x, %w bias %b : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>) -> tensor<?x16xbf16>
  return %0 : tensor<?x16xbf16>
}

// A 1-D input (one token) and a 3-D input (batch of sequences).
// CHECK-LABEL: func.func @linear_ranks
// CHECK: tfm.linear %{{.*}}, %{{.*}} : (tensor<64xf32>, tensor<16x64xf32>) -> tensor<16xf32>
// CHECK: tfm.linear %{{.*}}, %{{.*}} : (tensor<2x?x64xf32>, tensor<16x64xf32>) -> tensor<2x?x16xf32>
func.func @linear_ranks(%x1: tensor<64xf32>, %x3: tensor<2x?x64xf32>, %w: tensor<16x64xf32>) -> (tensor<16xf32>, tensor<2x?x16xf32>) {
  %0 = tfm.linear %x1, %w : (tensor<64xf32>, tensor<16x64xf32>) -> tensor<16xf32>
  %1 = tfm.linear %x3, %w : (tensor<2x?x64xf32>, tensor<16x64xf32>) -> tensor<2x?x16xf32>
  return %0, %1 : tensor<16xf32>, tensor<2x?x16xf32>
}

// CHECK-LABEL: func.func @quantized_linear
// CHECK: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} zeros %{{.*}} : (tensor<?x64xbf16>, tensor<16x64xi4>, tensor<16x2xf16>, tensor<16x2xui8>) -> tensor<?x16xbf16>
// CHECK: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} : (tensor<?x64xbf16>, tensor<16x64xi4>, tensor<16x2xf16>) -> tensor<?x16xbf16>
// CHECK: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} activations int8_per_token : (tensor<?x64xbf16>, tensor<16x64xi8>, tensor<16x1xf32>) -> tensor<?x16xbf16>
// CHECK: tfm.quantized_linear %{{.*}}, %{{.*}} scales %{{.*}} activations fp8_static activation_scale 2.500000e-01 : (tensor<?x64xbf16>, tensor<16x64xf8E4M3FN>, tensor<1x1xf32>) -> tensor<?x16xbf16>
func.func @quantized_linear(%x: tensor<?x64xbf16>, %q4: tensor<16x64xi4>, %s4: tensor<16x2xf16>, %z4: tensor<16x2xui8>, %q8: tensor<16x64xi8>, %s8: tensor<16x1xf32>, %f8: tensor<16x64xf8E4M3FN>, %sf: tensor<1x1xf32>) -> (tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>) {
  %0 = tfm.quantized_linear %x, %q4 scales %s4 zeros %z4 : (tensor<?x64xbf16>, tensor<16x64xi4>, tensor<16x2xf16>, tensor<16x2xui8>) -> tensor<?x16xbf16>
  %1 = tfm.quantized_linear %x, %q4 scales %s4 : (tensor<?x64xbf16>, tensor<16x64xi4>, tensor<16x2xf16>) -> tensor<?x16xbf16>
  %2 = tfm.quantized_linear %x, %q8 scales %s8 activations int8_per_token : (tensor<?x64xbf16>, tensor<16x64xi8>, tensor<16x1xf32>) -> tensor<?x16xbf16>
  %3 = tfm.quantized_linear %x, %f8 scales %sf activations fp8_static activation_scale 2.500000e-01 : (tensor<?x64xbf16>, tensor<16x64xf8E4M3FN>, tensor<1x1xf32>) -> tensor<?x16xbf16>
  return %0, %1, %2, %3 : tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>
}

// CHECK-LABEL: func.func @rope
// CHECK-SAME: (%[[X:.*]]: tensor<?x4x16xbf16>, %[[P:.*]]: tensor<?xi32>)
// CHECK: %[[Y:.*]] = tfm.rope %[[X]], %[[P]] theta 1.000000e+04 : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xbf16>
// CHECK-NOT: scaling
// CHECK: return %[[Y]]
func.func @rope(%x: tensor<?x4x16xbf16>, %pos: tensor<?xi32>) -> tensor<?x4x16xbf16> {
  %0 = tfm.rope %x, %pos theta 10000.0 : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xbf16>
  return %0 : tensor<?x4x16xbf16>
}

// CHECK-LABEL: func.func @rope_linear_scaling
// CHECK-SAME: (%[[X:.*]]: tensor<7x4x16xf32>, %[[P:.*]]: tensor<7xi64>)
// CHECK: %[[Y:.*]] = tfm.rope %[[X]], %[[P]] theta 5.000000e+05 scaling <linear, factor = 2.000000e+00> : (tensor<7x4x16xf32>, tensor<7xi64>) -> tensor<7x4x16xf32>
// CHECK: return %[[Y]]
func.func @rope_linear_scaling(%x: tensor<7x4x16xf32>, %pos: tensor<7xi64>) -> tensor<7x4x16xf32> {
  %0 = tfm.rope %x, %pos theta 500000.0 scaling <linear, factor = 2.0> : (tensor<7x4x16xf32>, tensor<7xi64>) -> tensor<7x4x16xf32>
  return %0 : tensor<7x4x16xf32>
}

// CHECK-LABEL: func.func @rope_llama3_scaling
// CHECK-SAME: (%[[X:.*]]: tensor<?x4x16xbf16>, %[[P:.*]]: tensor<?xi32>)
// CHECK: %[[Y:.*]] = tfm.rope %[[X]], %[[P]] theta 5.000000e+05 scaling <llama3, factor = 3.200000e+01, low_freq_factor = 2.000000e+00, high_freq_factor = 8.000000e+00, original_max_position_embeddings = 8192> : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xbf16>
// The default low and high frequency factors (1 and 4) are not printed.
// CHECK: %[[Z:.*]] = tfm.rope %[[X]], %[[P]] theta 5.000000e+05 scaling <llama3, factor = 8.000000e+00, original_max_position_embeddings = 8192> : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xbf16>
// CHECK: return %[[Y]], %[[Z]]
func.func @rope_llama3_scaling(%x: tensor<?x4x16xbf16>, %pos: tensor<?xi32>) -> (tensor<?x4x16xbf16>, tensor<?x4x16xbf16>) {
  %0 = tfm.rope %x, %pos theta 500000.0 scaling <llama3, factor = 32.0, low_freq_factor = 2.0, high_freq_factor = 8.0, original_max_position_embeddings = 8192> : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xbf16>
  %1 = tfm.rope %x, %pos theta 500000.0 scaling <llama3, original_max_position_embeddings = 8192, factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0> : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xbf16>
  return %0, %1 : tensor<?x4x16xbf16>, tensor<?x4x16xbf16>
}

// The scaling attribute on its own, in its dialect form.
// CHECK-LABEL: func.func @rope_scaling_attr
// CHECK: tfm.scaling = #tfm.rope_scaling<llama3, factor = 3.200000e+01, original_max_position_embeddings = 8192>
func.func @rope_scaling_attr() attributes {tfm.scaling = #tfm.rope_scaling<llama3, factor = 32.0, original_max_position_embeddings = 8192>} {
  return
}

// CHECK-LABEL: func.func @attention_mha
// CHECK-SAME: (%[[Q:.*]]: tensor<?x4x16xf32>, %[[K:.*]]: tensor<?x4x16xf32>, %[[V:.*]]: tensor<?x4x16xf32>)
// CHECK: %[[A:.*]] = tfm.attention %[[Q]], %[[K]], %[[V]] scale 2.500000e-01 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
// CHECK-NOT: causal
// CHECK: return %[[A]]
func.func @attention_mha(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) -> tensor<?x4x16xf32> {
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return %0 : tensor<?x4x16xf32>
}

// CHECK-LABEL: func.func @attention_causal_gqa
// CHECK-SAME: (%[[Q:.*]]: tensor<?x6x64xbf16>, %[[K:.*]]: tensor<?x2x64xbf16>, %[[V:.*]]: tensor<?x2x64xbf16>)
// CHECK: %[[A:.*]] = tfm.attention %[[Q]], %[[K]], %[[V]] scale 1.250000e-01 causal : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
// CHECK-NOT: sliding_window
// CHECK: return %[[A]]
func.func @attention_causal_gqa(%q: tensor<?x6x64xbf16>, %k: tensor<?x2x64xbf16>, %v: tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16> {
  %0 = tfm.attention %q, %k, %v scale 0.125 causal : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
  return %0 : tensor<?x6x64xbf16>
}

// CHECK-LABEL: func.func @attention_fp8_cache
// CHECK: tfm.attention %{{.*}}, %{{.*}}, %{{.*}} scale 1.250000e-01 causal kv_cache !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 32, element_type = f8E4M3FN> :
func.func @attention_fp8_cache(%q: tensor<?x6x64xbf16>, %k: tensor<?x2x64xbf16>, %v: tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16> {
  %0 = tfm.attention %q, %k, %v scale 0.125 causal kv_cache !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 32, element_type = f8E4M3FN> : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
  return %0 : tensor<?x6x64xbf16>
}

// CHECK-LABEL: func.func @attention_sliding_window_mqa
// CHECK-SAME: (%[[Q:.*]]: tensor<9x8x32xbf16>, %[[K:.*]]: tensor<9x1x32xbf16>, %[[V:.*]]: tensor<9x1x32xbf16>)
// CHECK: %[[A:.*]] = tfm.attention %[[Q]], %[[K]], %[[V]] scale 6.250000e-02 causal sliding_window 4 : (tensor<9x8x32xbf16>, tensor<9x1x32xbf16>, tensor<9x1x32xbf16>) -> tensor<9x8x32xbf16>
// CHECK: return %[[A]]
func.func @attention_sliding_window_mqa(%q: tensor<9x8x32xbf16>, %k: tensor<9x1x32xbf16>, %v: tensor<9x1x32xbf16>) -> tensor<9x8x32xbf16> {
  %0 = tfm.attention %q, %k, %v scale 0.0625 causal sliding_window 4 : (tensor<9x8x32xbf16>, tensor<9x1x32xbf16>, tensor<9x1x32xbf16>) -> tensor<9x8x32xbf16>
  return %0 : tensor<9x8x32xbf16>
}

// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[G:.*]]: tensor<?x128xbf16>, %[[U:.*]]: tensor<?x128xbf16>)
// CHECK: %[[S:.*]] = tfm.swiglu %[[G]], %[[U]] : tensor<?x128xbf16>
// CHECK: return %[[S]]
func.func @swiglu(%g: tensor<?x128xbf16>, %u: tensor<?x128xbf16>) -> tensor<?x128xbf16> {
  %0 = tfm.swiglu %g, %u : tensor<?x128xbf16>
  return %0 : tensor<?x128xbf16>
}

//===----------------------------------------------------------------------===//
// Primitives
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @matmul
// CHECK-SAME: (%[[A:.*]]: tensor<?x64xf32>, %[[B:.*]]: tensor<64x16xf32>, %[[BA:.*]]: tensor<4x?x16xf32>, %[[BB:.*]]: tensor<4x16x?xf32>)
// CHECK: %[[M:.*]] = tfm.matmul %[[A]], %[[B]] : (tensor<?x64xf32>, tensor<64x16xf32>) -> tensor<?x16xf32>
// CHECK: %[[BM:.*]] = tfm.matmul %[[BA]], %[[BB]] : (tensor<4x?x16xf32>, tensor<4x16x?xf32>) -> tensor<4x?x?xf32>
// CHECK: return %[[M]], %[[BM]]
func.func @matmul(%a: tensor<?x64xf32>, %b: tensor<64x16xf32>, %ba: tensor<4x?x16xf32>, %bb: tensor<4x16x?xf32>) -> (tensor<?x16xf32>, tensor<4x?x?xf32>) {
  %0 = tfm.matmul %a, %b : (tensor<?x64xf32>, tensor<64x16xf32>) -> tensor<?x16xf32>
  %1 = tfm.matmul %ba, %bb : (tensor<4x?x16xf32>, tensor<4x16x?xf32>) -> tensor<4x?x?xf32>
  return %0, %1 : tensor<?x16xf32>, tensor<4x?x?xf32>
}

// CHECK-LABEL: func.func @add_mul
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[Y:.*]]: tensor<?x16xf32>, %[[B:.*]]: tensor<16xf32>)
// CHECK: %[[S:.*]] = tfm.add %[[X]], %[[Y]] : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
// CHECK: %[[SB:.*]] = tfm.add %[[S]], %[[B]] : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
// CHECK: %[[P:.*]] = tfm.mul %[[SB]], %[[Y]] : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
// CHECK: %[[PB:.*]] = tfm.mul %[[P]], %[[B]] : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
// CHECK: return %[[PB]]
func.func @add_mul(%x: tensor<?x16xf32>, %y: tensor<?x16xf32>, %b: tensor<16xf32>) -> tensor<?x16xf32> {
  %0 = tfm.add %x, %y : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %1 = tfm.add %0, %b : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  %2 = tfm.mul %1, %y : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %3 = tfm.mul %2, %b : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return %3 : tensor<?x16xf32>
}

// CHECK-LABEL: func.func @unary
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>)
// CHECK: %[[S:.*]] = tfm.silu %[[X]] : tensor<?x16xbf16>
// CHECK: %[[C:.*]] = tfm.scale %[[S]] by 5.000000e-01 : tensor<?x16xbf16>
// CHECK: %[[F:.*]] = tfm.cast %[[C]] : tensor<?x16xbf16> to tensor<?x16xf32>
// CHECK: %[[H:.*]] = tfm.cast %[[F]] : tensor<?x16xf32> to tensor<?x16xf16>
// CHECK: return %[[H]]
func.func @unary(%x: tensor<?x16xbf16>) -> tensor<?x16xf16> {
  %0 = tfm.silu %x : tensor<?x16xbf16>
  %1 = tfm.scale %0 by 0.5 : tensor<?x16xbf16>
  %2 = tfm.cast %1 : tensor<?x16xbf16> to tensor<?x16xf32>
  %3 = tfm.cast %2 : tensor<?x16xf32> to tensor<?x16xf16>
  return %3 : tensor<?x16xf16>
}

// CHECK-LABEL: func.func @softmax_causal_mask
// CHECK-SAME: (%[[S:.*]]: tensor<4x?x?xf32>)
// CHECK: %[[M:.*]] = tfm.causal_mask %[[S]] : tensor<4x?x?xf32>
// CHECK: %[[W:.*]] = tfm.causal_mask %[[M]] sliding_window 8 : tensor<4x?x?xf32>
// CHECK: %[[P:.*]] = tfm.softmax %[[W]] dim 2 : tensor<4x?x?xf32>
// CHECK: %[[P0:.*]] = tfm.softmax %[[P]] dim 0 : tensor<4x?x?xf32>
// CHECK: return %[[P0]]
func.func @softmax_causal_mask(%s: tensor<4x?x?xf32>) -> tensor<4x?x?xf32> {
  %0 = tfm.causal_mask %s : tensor<4x?x?xf32>
  %1 = tfm.causal_mask %0 sliding_window 8 : tensor<4x?x?xf32>
  %2 = tfm.softmax %1 dim 2 : tensor<4x?x?xf32>
  %3 = tfm.softmax %2 dim 0 : tensor<4x?x?xf32>
  return %3 : tensor<4x?x?xf32>
}

// CHECK-LABEL: func.func @transpose
// CHECK-SAME: (%[[X:.*]]: tensor<?x4x16xf32>, %[[I:.*]]: tensor<3x5xi32>)
// CHECK: %[[T:.*]] = tfm.transpose %[[X]] [1, 2, 0] : tensor<?x4x16xf32> -> tensor<4x16x?xf32>
// CHECK: %[[TI:.*]] = tfm.transpose %[[I]] [1, 0] : tensor<3x5xi32> -> tensor<5x3xi32>
// CHECK: return %[[T]], %[[TI]]
func.func @transpose(%x: tensor<?x4x16xf32>, %i: tensor<3x5xi32>) -> (tensor<4x16x?xf32>, tensor<5x3xi32>) {
  %0 = tfm.transpose %x [1, 2, 0] : tensor<?x4x16xf32> -> tensor<4x16x?xf32>
  // Any element type: transpose only moves data.
  %1 = tfm.transpose %i [1, 0] : tensor<3x5xi32> -> tensor<5x3xi32>
  return %0, %1 : tensor<4x16x?xf32>, tensor<5x3xi32>
}

// CHECK-LABEL: func.func @reshape
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[S:.*]]: tensor<6x4xf32>)
// CHECK: %[[H:.*]] = tfm.reshape %[[X]] : tensor<?x64xbf16> -> tensor<?x4x16xbf16>
// CHECK: %[[F:.*]] = tfm.reshape %[[H]] : tensor<?x4x16xbf16> -> tensor<?x2x2x16xbf16>
// CHECK: %[[T:.*]] = tfm.reshape %[[S]] : tensor<6x4xf32> -> tensor<2x3x4xf32>
// CHECK: %[[FL:.*]] = tfm.reshape %[[S]] : tensor<6x4xf32> -> tensor<24xf32>
// CHECK: return %[[F]], %[[T]], %[[FL]]
func.func @reshape(%x: tensor<?x64xbf16>, %s: tensor<6x4xf32>) -> (tensor<?x2x2x16xbf16>, tensor<2x3x4xf32>, tensor<24xf32>) {
  // Dynamic token dimension: the leading dim is kept.
  %0 = tfm.reshape %x : tensor<?x64xbf16> -> tensor<?x4x16xbf16>
  %1 = tfm.reshape %0 : tensor<?x4x16xbf16> -> tensor<?x2x2x16xbf16>
  // Static shapes: only the element counts must agree.
  %2 = tfm.reshape %s : tensor<6x4xf32> -> tensor<2x3x4xf32>
  %3 = tfm.reshape %s : tensor<6x4xf32> -> tensor<24xf32>
  return %1, %2, %3 : tensor<?x2x2x16xbf16>, tensor<2x3x4xf32>, tensor<24xf32>
}

// CHECK-LABEL: func.func @repeat
// CHECK-SAME: (%[[K:.*]]: tensor<?x2x64xbf16>)
// CHECK: %[[R:.*]] = tfm.repeat %[[K]] dim 1 times 3 : tensor<?x2x64xbf16> -> tensor<?x6x64xbf16>
// CHECK: %[[D:.*]] = tfm.repeat %[[R]] dim 0 times 2 : tensor<?x6x64xbf16> -> tensor<?x6x64xbf16>
// CHECK: return %[[D]]
func.func @repeat(%k: tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16> {
  %0 = tfm.repeat %k dim 1 times 3 : tensor<?x2x64xbf16> -> tensor<?x6x64xbf16>
  // Repeating a dynamic dimension keeps it dynamic.
  %1 = tfm.repeat %0 dim 0 times 2 : tensor<?x6x64xbf16> -> tensor<?x6x64xbf16>
  return %1 : tensor<?x6x64xbf16>
}

// CHECK-LABEL: func.func @split
// CHECK-SAME: (%[[X:.*]]: tensor<?x96xbf16>)
// CHECK: %[[P:.*]]:3 = tfm.split %[[X]] dim 1 : tensor<?x96xbf16> -> tensor<?x64xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>
// CHECK: %[[ONE:.*]] = tfm.split %[[X]] dim 1 : tensor<?x96xbf16> -> tensor<?x96xbf16>
// CHECK: return %[[P]]#0, %[[P]]#1, %[[P]]#2, %[[ONE]]
func.func @split(%x: tensor<?x96xbf16>) -> (tensor<?x64xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x96xbf16>) {
  %0:3 = tfm.split %x dim 1 : tensor<?x96xbf16> -> tensor<?x64xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>
  %1 = tfm.split %x dim 1 : tensor<?x96xbf16> -> tensor<?x96xbf16>
  return %0#0, %0#1, %0#2, %1 : tensor<?x64xbf16>, tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x96xbf16>
}

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @kv_cache
// CHECK-SAME: (%[[C:.*]]: !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16>, %[[Q:.*]]: !tfm.kv_cache<layers = 1, kv_heads = 1, head_dim = 8, block_size = 1, element_type = i8>)
// CHECK-SAME: -> !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16>
// CHECK: return %[[C]]
func.func @kv_cache(%cache: !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16>,
                    %quantized: !tfm.kv_cache<block_size = 1, head_dim = 8, kv_heads = 1, layers = 1, element_type = i8>)
    -> !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16> {
  return %cache : !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16>
}
