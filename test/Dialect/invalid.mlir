// RUN: optmlir-opt %s -split-input-file -verify-diagnostics

// One case per verifier message of the tfm dialect.

//===----------------------------------------------------------------------===//
// tfm.weight
//===----------------------------------------------------------------------===//

// The custom form ties concat and dim together; the generic form does not.
// expected-error @+1 {{'tfm.weight' op needs both a concat list and a dim, or neither}}
"tfm.weight"() <{sym_name = "w", type = tensor<4xf32>, dim = 0 : i64}> : () -> ()

// -----

tfm.weight @a : tensor<4xf32>
// expected-error @+1 {{'tfm.weight' op needs both a concat list and a dim, or neither}}
"tfm.weight"() <{sym_name = "w", type = tensor<4xf32>, concat = [@a]}> : () -> ()

// -----

tfm.weight @a : tensor<4x8xf32>
// expected-error @+1 {{'tfm.weight' op concat dim 2 is out of range for rank 2}}
tfm.weight @w : tensor<4x8xf32> = concat [@a] dim 2

// -----

tfm.weight @a : tensor<4x8xf32>
// expected-error @+1 {{'tfm.weight' op concat dim -1 is out of range for rank 2}}
tfm.weight @w : tensor<4x8xf32> = concat [@a] dim -1

// -----

// expected-error @+1 {{'tfm.weight' op concat list is empty}}
tfm.weight @w : tensor<4x8xf32> = concat [] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
// expected-error @+1 {{'tfm.weight' op concat part 1 refers to itself}}
tfm.weight @w : tensor<8x8xf32> = concat [@a, @w] dim 0

// -----

// A cycle through another weight is as bad as a direct self reference: the
// weight store could never compute either.
// expected-error @+1 {{'tfm.weight' op concat part @b refers back to @a}}
tfm.weight @a : tensor<4x8xf32> = concat [@b] dim 0
tfm.weight @b : tensor<4x8xf32> = concat [@a] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
// expected-error @+1 {{'tfm.weight' op refers to @missing, which is not a tfm.weight}}
tfm.weight @w : tensor<8x8xf32> = concat [@a, @missing] dim 0

// -----

func.func @f() {
  return
}
// expected-error @+1 {{'tfm.weight' op refers to @f, which is not a tfm.weight}}
tfm.weight @w : tensor<4xf32> = concat [@f] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
tfm.weight @b : tensor<4x8xbf16>
// expected-error @+1 {{'tfm.weight' op concat part @b has element type 'bf16' but 'f32' was expected}}
tfm.weight @w : tensor<8x8xf32> = concat [@a, @b] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
tfm.weight @b : tensor<32xf32>
// expected-error @+1 {{'tfm.weight' op concat part @b has rank 1 but 2 was expected}}
tfm.weight @w : tensor<8x8xf32> = concat [@a, @b] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
tfm.weight @b : tensor<4x16xf32>
// expected-error @+1 {{'tfm.weight' op concat part @b has shape [4, 16], which differs from [8, 8] outside dim 0}}
tfm.weight @w : tensor<8x8xf32> = concat [@a, @b] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
tfm.weight @b : tensor<2x8xf32>
// expected-error @+1 {{'tfm.weight' op concat parts add up to 6 along dim 0 but the weight has 8}}
tfm.weight @w : tensor<8x8xf32> = concat [@a, @b] dim 0

// -----

tfm.weight @a : tensor<4x8xf32>
// expected-error @+1 {{'tfm.weight' op concat parts add up to 16 along dim 1 but the weight has 12}}
tfm.weight @w : tensor<4x12xf32> = concat [@a, @a] dim 1

// -----

// expected-error @+1 {{'tfm.weight' op attribute 'type' failed to satisfy constraint}}
tfm.weight @w : tensor<?x8xf32>

// -----

func.func @in_function() {
  // expected-error @+1 {{'tfm.weight' op expects parent op 'builtin.module'}}
  tfm.weight @w : tensor<4xf32>
  return
}

// -----

tfm.weight @a : tensor<4x8xf32>
// expected-error @+1 {{'tfm.weight' op is either a concatenation or derived, not both}}
"tfm.weight"() <{sym_name = "w", type = tensor<8x8xf32>, concat = [@a, @a], dim = 0 : i64, derived = @a}> : () -> ()

// -----

// expected-error @+1 {{'tfm.weight' op is derived from itself}}
tfm.weight @w : tensor<4x8xi4> derived_from @w

// -----

// expected-error @+1 {{'tfm.weight' op refers to @gone, which is not a tfm.weight}}
tfm.weight @w : tensor<4x8xi4> derived_from @gone

// -----

//===----------------------------------------------------------------------===//
// tfm.get_weight
//===----------------------------------------------------------------------===//

// -----

func.func @unknown_weight() -> tensor<4xf32> {
  // expected-error @+1 {{'tfm.get_weight' op refers to @missing, which is not a tfm.weight}}
  %0 = tfm.get_weight @missing : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @not_a_weight() -> tensor<4xf32> {
  // expected-error @+1 {{'tfm.get_weight' op refers to @not_a_weight, which is not a tfm.weight}}
  %0 = tfm.get_weight @not_a_weight : tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

tfm.weight @w : tensor<4x8xbf16>
func.func @wrong_shape() -> tensor<8x4xbf16> {
  // expected-error @+1 {{'tfm.get_weight' op result type 'tensor<8x4xbf16>' differs from the type of @w, 'tensor<4x8xbf16>'}}
  %0 = tfm.get_weight @w : tensor<8x4xbf16>
  return %0 : tensor<8x4xbf16>
}

// -----

tfm.weight @w : tensor<4x8xbf16>
func.func @wrong_element_type() -> tensor<4x8xf32> {
  // expected-error @+1 {{'tfm.get_weight' op result type 'tensor<4x8xf32>' differs from the type of @w, 'tensor<4x8xbf16>'}}
  %0 = tfm.get_weight @w : tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

//===----------------------------------------------------------------------===//
// tfm.embed
//===----------------------------------------------------------------------===//

// -----

func.func @embed_ids_rank(%ids: tensor<2x3xi32>, %table: tensor<256x64xbf16>) {
  // expected-error @+1 {{'tfm.embed' op ids must have rank 1, got [2, 3]}}
  %0 = tfm.embed %ids, %table : (tensor<2x3xi32>, tensor<256x64xbf16>) -> tensor<6x64xbf16>
  return
}

// -----

func.func @embed_table_rank(%ids: tensor<?xi32>, %table: tensor<256xbf16>) {
  // expected-error @+1 {{'tfm.embed' op table must have rank 2, got [256]}}
  %0 = tfm.embed %ids, %table : (tensor<?xi32>, tensor<256xbf16>) -> tensor<?x64xbf16>
  return
}

// -----

func.func @embed_result_shape(%ids: tensor<?xi32>, %table: tensor<256x64xbf16>) {
  // expected-error @+1 {{'tfm.embed' op result has shape [?, 32] but [?, 64] was expected}}
  %0 = tfm.embed %ids, %table : (tensor<?xi32>, tensor<256x64xbf16>) -> tensor<?x32xbf16>
  return
}

// -----

func.func @embed_result_element_type(%ids: tensor<?xi32>, %table: tensor<256x64xbf16>) {
  // expected-error @+1 {{'tfm.embed' op result has element type 'f32' but 'bf16' was expected}}
  %0 = tfm.embed %ids, %table : (tensor<?xi32>, tensor<256x64xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @embed_float_ids(%ids: tensor<?xf32>, %table: tensor<256x64xbf16>) {
  // expected-error @+1 {{'tfm.embed' op operand #0 must be ranked tensor of 32-bit signless integer or 64-bit signless integer values}}
  %0 = tfm.embed %ids, %table : (tensor<?xf32>, tensor<256x64xbf16>) -> tensor<?x64xbf16>
  return
}

//===----------------------------------------------------------------------===//
// tfm.rms_norm
//===----------------------------------------------------------------------===//

// -----

func.func @rms_norm_scalar(%x: tensor<f32>, %w: tensor<1xf32>) {
  // expected-error @+1 {{'tfm.rms_norm' op input must have rank 1 or more}}
  %0 = tfm.rms_norm %x, %w eps 1.0e-05 : (tensor<f32>, tensor<1xf32>) -> tensor<f32>
  return
}

// -----

func.func @rms_norm_weight_rank(%x: tensor<?x64xf32>, %w: tensor<1x64xf32>) {
  // expected-error @+1 {{'tfm.rms_norm' op weight must have rank 1, got [1, 64]}}
  %0 = tfm.rms_norm %x, %w eps 1.0e-05 : (tensor<?x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @rms_norm_weight_size(%x: tensor<?x64xf32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{'tfm.rms_norm' op weight size is 32 but the last dim of input is 64}}
  %0 = tfm.rms_norm %x, %w eps 1.0e-05 : (tensor<?x64xf32>, tensor<32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @rms_norm_result_shape(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'tfm.rms_norm' op result has shape [?, 32] but [?, 64] was expected}}
  %0 = tfm.rms_norm %x, %w eps 1.0e-05 : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @rms_norm_result_element_type(%x: tensor<?x64xbf16>, %w: tensor<64xbf16>) {
  // expected-error @+1 {{'tfm.rms_norm' op result has element type 'f32' but 'bf16' was expected}}
  %0 = tfm.rms_norm %x, %w eps 1.0e-05 : (tensor<?x64xbf16>, tensor<64xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @rms_norm_eps(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'tfm.rms_norm' op eps must be positive}}
  %0 = tfm.rms_norm %x, %w eps 0.0 : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.linear
//===----------------------------------------------------------------------===//

// -----

func.func @linear_scalar_input(%x: tensor<f32>, %w: tensor<16x1xf32>) {
  // expected-error @+1 {{'tfm.linear' op input must have rank 1 or more}}
  %0 = tfm.linear %x, %w : (tensor<f32>, tensor<16x1xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'tfm.linear' op weight must have rank 2, got [64]}}
  %0 = tfm.linear %x, %w : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x1xf32>
  return
}

// -----

func.func @linear_in_features(%x: tensor<?x64xf32>, %w: tensor<16x32xf32>) {
  // expected-error @+1 {{'tfm.linear' op weight in_features is 32 but the last dim of input is 64}}
  %0 = tfm.linear %x, %w : (tensor<?x64xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @linear_bias_shape(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>, %b: tensor<64xf32>) {
  // expected-error @+1 {{'tfm.linear' op bias has shape [64] but [16] was expected}}
  %0 = tfm.linear %x, %w bias %b : (tensor<?x64xf32>, tensor<16x64xf32>, tensor<64xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @linear_bias_rank(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>, %b: tensor<1x16xf32>) {
  // expected-error @+1 {{'tfm.linear' op bias has shape [1, 16] but [16] was expected}}
  %0 = tfm.linear %x, %w bias %b : (tensor<?x64xf32>, tensor<16x64xf32>, tensor<1x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @linear_result_shape(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>) {
  // expected-error @+1 {{'tfm.linear' op result has shape [?, 64] but [?, 16] was expected}}
  %0 = tfm.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @linear_result_rank(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>) {
  // expected-error @+1 {{'tfm.linear' op result has shape [16] but [?, 16] was expected}}
  %0 = tfm.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<16xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.quantized_linear
//===----------------------------------------------------------------------===//

// -----

func.func @ql_in_features(%x: tensor<?x32xf32>, %q: tensor<16x64xi4>, %s: tensor<16x2xf16>) {
  // expected-error @+1 {{'tfm.quantized_linear' op values in_features is 64 but the last dim of input is 32}}
  %0 = tfm.quantized_linear %x, %q scales %s : (tensor<?x32xf32>, tensor<16x64xi4>, tensor<16x2xf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_int4_scale_type(%x: tensor<?x64xf32>, %q: tensor<16x64xi4>, %s: tensor<16x2xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op int4 values need f16 scales, got 'f32'}}
  %0 = tfm.quantized_linear %x, %q scales %s : (tensor<?x64xf32>, tensor<16x64xi4>, tensor<16x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_groups(%x: tensor<?x64xf32>, %q: tensor<16x64xi4>, %s: tensor<16x3xf16>) {
  // expected-error @+1 {{'tfm.quantized_linear' op scales of shape [16, 3] do not split the 64 input features of 16 rows into groups of an even size}}
  %0 = tfm.quantized_linear %x, %q scales %s : (tensor<?x64xf32>, tensor<16x64xi4>, tensor<16x3xf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_zeros_shape(%x: tensor<?x64xf32>, %q: tensor<16x64xi4>, %s: tensor<16x2xf16>, %z: tensor<16x4xui8>) {
  // expected-error @+1 {{'tfm.quantized_linear' op zeros has shape [16, 4] but [16, 2] was expected}}
  %0 = tfm.quantized_linear %x, %q scales %s zeros %z : (tensor<?x64xf32>, tensor<16x64xi4>, tensor<16x2xf16>, tensor<16x4xui8>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_int8_zeros(%x: tensor<?x64xf32>, %q: tensor<16x64xi8>, %s: tensor<16x1xf32>, %z: tensor<16x1xui8>) {
  // expected-error @+1 {{'tfm.quantized_linear' op only int4 values have zero points}}
  %0 = tfm.quantized_linear %x, %q scales %s zeros %z : (tensor<?x64xf32>, tensor<16x64xi8>, tensor<16x1xf32>, tensor<16x1xui8>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_int8_scale_type(%x: tensor<?x64xf32>, %q: tensor<16x64xi8>, %s: tensor<16x1xf16>) {
  // expected-error @+1 {{'tfm.quantized_linear' op int8 and fp8 values need f32 scales, got 'f16'}}
  %0 = tfm.quantized_linear %x, %q scales %s : (tensor<?x64xf32>, tensor<16x64xi8>, tensor<16x1xf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_int8_per_tensor(%x: tensor<?x64xf32>, %q: tensor<16x64xi8>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op scales have shape [1, 1] but [16, 1] (one a row) was expected}}
  %0 = tfm.quantized_linear %x, %q scales %s : (tensor<?x64xf32>, tensor<16x64xi8>, tensor<1x1xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_int8_activations(%x: tensor<?x64xf32>, %q: tensor<16x64xi4>, %s: tensor<16x2xf16>) {
  // expected-error @+1 {{'tfm.quantized_linear' op int8 activations need int8 values}}
  %0 = tfm.quantized_linear %x, %q scales %s activations int8_per_token : (tensor<?x64xf32>, tensor<16x64xi4>, tensor<16x2xf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_fp8_activations(%x: tensor<?x64xf32>, %q: tensor<16x64xi8>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op fp8 activations need fp8 values}}
  %0 = tfm.quantized_linear %x, %q scales %s activations fp8_dynamic : (tensor<?x64xf32>, tensor<16x64xi8>, tensor<16x1xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_static_needs_scale(%x: tensor<?x64xf32>, %q: tensor<16x64xf8E4M3FN>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op fp8_static activations need an activation_scale}}
  %0 = tfm.quantized_linear %x, %q scales %s activations fp8_static : (tensor<?x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_scale_without_static(%x: tensor<?x64xf32>, %q: tensor<16x64xf8E4M3FN>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op only fp8_static activations take an activation_scale}}
  %0 = tfm.quantized_linear %x, %q scales %s activations fp8_dynamic activation_scale 1.0 : (tensor<?x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_negative_scale(%x: tensor<?x64xf32>, %q: tensor<16x64xf8E4M3FN>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op activation_scale must be positive}}
  %0 = tfm.quantized_linear %x, %q scales %s activations fp8_static activation_scale -1.0 : (tensor<?x64xf32>, tensor<16x64xf8E4M3FN>, tensor<16x1xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ql_result(%x: tensor<?x64xf32>, %q: tensor<16x64xi8>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{'tfm.quantized_linear' op result has shape [?, 64] but [?, 16] was expected}}
  %0 = tfm.quantized_linear %x, %q scales %s : (tensor<?x64xf32>, tensor<16x64xi8>, tensor<16x1xf32>) -> tensor<?x64xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// tfm.rope
//===----------------------------------------------------------------------===//

// -----

func.func @rope_input_rank(%x: tensor<?x64xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'tfm.rope' op input must have rank 3, got [?, 64]}}
  %0 = tfm.rope %x, %p theta 10000.0 : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @rope_positions_rank(%x: tensor<?x4x16xf32>, %p: tensor<1x?xi32>) {
  // expected-error @+1 {{'tfm.rope' op positions must have rank 1, got [1, ?]}}
  %0 = tfm.rope %x, %p theta 10000.0 : (tensor<?x4x16xf32>, tensor<1x?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_positions_length(%x: tensor<7x4x16xf32>, %p: tensor<5xi32>) {
  // expected-error @+1 {{'tfm.rope' op positions length is 5 but the token count of input is 7}}
  %0 = tfm.rope %x, %p theta 10000.0 : (tensor<7x4x16xf32>, tensor<5xi32>) -> tensor<7x4x16xf32>
  return
}

// -----

func.func @rope_odd_head_dim(%x: tensor<?x4x15xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'tfm.rope' op input head dim must be even, got 15}}
  %0 = tfm.rope %x, %p theta 10000.0 : (tensor<?x4x15xf32>, tensor<?xi32>) -> tensor<?x4x15xf32>
  return
}

// -----

func.func @rope_theta(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'tfm.rope' op theta must be positive}}
  %0 = tfm.rope %x, %p theta -1.0 : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_result_type(%x: tensor<?x4x16xbf16>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'tfm.rope' op result type 'tensor<?x4x16xf32>' differs from input type 'tensor<?x4x16xbf16>'}}
  %0 = tfm.rope %x, %p theta 10000.0 : (tensor<?x4x16xbf16>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_scaling_factor(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{rope scaling factor must be positive, got 0.000000e+00}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <linear, factor = 0.0> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_scaling_negative_factor(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{rope scaling factor must be positive, got -8.000000e+00}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <llama3, factor = -8.0, original_max_position_embeddings = 8192> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_llama3_low_not_below_high(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor, got 4.000000e+00 and 4.000000e+00}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <llama3, factor = 8.0, low_freq_factor = 4.0, high_freq_factor = 4.0, original_max_position_embeddings = 8192> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_llama3_low_not_positive(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor, got 0.000000e+00 and 4.000000e+00}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <llama3, factor = 8.0, low_freq_factor = 0.0, original_max_position_embeddings = 8192> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_llama3_no_original_max(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{llama3 rope scaling needs a positive original_max_position_embeddings}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <llama3, factor = 8.0> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_scaling_missing_factor(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{struct is missing required parameter: factor}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <linear, low_freq_factor = 1.0> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_scaling_unknown_kind(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+2 {{expected ::mlir::tfm::RopeScalingKind to be one of: linear, llama3}}
  // expected-error @+1 {{failed to parse Tfm_RopeScalingAttr parameter 'kind'}}
  %0 = tfm.rope %x, %p theta 10000.0 scaling <yarn, factor = 4.0> : (tensor<?x4x16xf32>, tensor<?xi32>) -> tensor<?x4x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.attention
//===----------------------------------------------------------------------===//

// -----

func.func @attention_query_rank(%q: tensor<?x64xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op query must have rank 3, got [?, 64]}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x64xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @attention_key_rank(%q: tensor<?x4x16xf32>, %k: tensor<?x64xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op key must have rank 3, got [?, 64]}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x64xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_value_rank(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x64xf32>) {
  // expected-error @+1 {{'tfm.attention' op value must have rank 3, got [?, 64]}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x64xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_value_shape(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op value has shape [?, 4, 16] but [?, 2, 16] was expected}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_token_count(%q: tensor<7x4x16xf32>, %k: tensor<5x4x16xf32>, %v: tensor<5x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op key token count is 5 but the query token count is 7}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<7x4x16xf32>, tensor<5x4x16xf32>, tensor<5x4x16xf32>) -> tensor<7x4x16xf32>
  return
}

// -----

func.func @attention_head_dim(%q: tensor<?x4x16xf32>, %k: tensor<?x4x32xf32>, %v: tensor<?x4x32xf32>) {
  // expected-error @+1 {{'tfm.attention' op key head dim is 32 but the query head dim is 16}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x4x32xf32>, tensor<?x4x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_dynamic_heads(%q: tensor<?x?x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op query and key head counts must be static}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x?x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x?x16xf32>
  return
}

// -----

func.func @attention_dynamic_kv_heads(%q: tensor<?x4x16xf32>, %k: tensor<?x?x16xf32>, %v: tensor<?x?x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op query and key head counts must be static}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x?x16xf32>, tensor<?x?x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_gqa_not_multiple(%q: tensor<?x6x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op query has 6 heads, not a multiple of the 4 key/value heads}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x6x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x6x16xf32>
  return
}

// -----

func.func @attention_more_kv_heads(%q: tensor<?x2x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op query has 2 heads, not a multiple of the 4 key/value heads}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x2x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x2x16xf32>
  return
}

// -----

// Zero key/value heads once crashed the verifier (a division by zero).
func.func @attention_zero_kv_heads(%q: tensor<?x4x16xf32>, %k: tensor<?x0x16xf32>, %v: tensor<?x0x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op needs at least one key/value head, got 0}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x0x16xf32>, tensor<?x0x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_zero_window(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op sliding_window must be positive, got 0}}
  %0 = tfm.attention %q, %k, %v scale 0.25 causal sliding_window 0 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

// Integer attributes are read as signed: a negative window is not a huge one.
func.func @attention_negative_window(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op sliding_window must be positive, got -4}}
  %0 = tfm.attention %q, %k, %v scale 0.25 causal sliding_window -4 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_window_not_causal(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op sliding_window needs causal}}
  %0 = tfm.attention %q, %k, %v scale 0.25 sliding_window 8 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_scale(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op scale must be positive}}
  %0 = tfm.attention %q, %k, %v scale 0.0 causal : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_result_type(%q: tensor<?x4x16xf32>, %k: tensor<?x4x16xf32>, %v: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op result type 'tensor<?x4x16xbf16>' differs from query type 'tensor<?x4x16xf32>'}}
  %0 = tfm.attention %q, %k, %v scale 0.25 : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) -> tensor<?x4x16xbf16>
  return
}

//===----------------------------------------------------------------------===//
// tfm.swiglu, tfm.silu, tfm.scale, tfm.cast (ODS traits)
//===----------------------------------------------------------------------===//

// -----

func.func @swiglu_types(%g: tensor<?x16xf32>, %u: tensor<?x8xf32>) {
  // expected-error @+1 {{'tfm.swiglu' op requires the same type for all operands and results}}
  %0 = "tfm.swiglu"(%g, %u) : (tensor<?x16xf32>, tensor<?x8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @cast_shape(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'tfm.cast' op requires the same shape for all operands and results}}
  %0 = tfm.cast %x : tensor<?x16xf32> to tensor<?x8xbf16>
  return
}

//===----------------------------------------------------------------------===//
// tfm.matmul
//===----------------------------------------------------------------------===//

// -----

func.func @matmul_lhs_rank(%a: tensor<64xf32>, %b: tensor<64x16xf32>) {
  // expected-error @+1 {{'tfm.matmul' op lhs must have rank 2 or more}}
  %0 = tfm.matmul %a, %b : (tensor<64xf32>, tensor<64x16xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @matmul_rhs_rank(%a: tensor<4x?x64xf32>, %b: tensor<64x16xf32>) {
  // expected-error @+1 {{'tfm.matmul' op rhs must have rank 3, got [64, 16]}}
  %0 = tfm.matmul %a, %b : (tensor<4x?x64xf32>, tensor<64x16xf32>) -> tensor<4x?x16xf32>
  return
}

// -----

func.func @matmul_batch(%a: tensor<4x?x64xf32>, %b: tensor<2x64x16xf32>) {
  // expected-error @+1 {{'tfm.matmul' op rhs batch dim 0 is 2 but that of lhs is 4}}
  %0 = tfm.matmul %a, %b : (tensor<4x?x64xf32>, tensor<2x64x16xf32>) -> tensor<4x?x16xf32>
  return
}

// -----

func.func @matmul_contraction(%a: tensor<?x64xf32>, %b: tensor<32x16xf32>) {
  // expected-error @+1 {{'tfm.matmul' op rhs rows is 32 but the lhs columns is 64}}
  %0 = tfm.matmul %a, %b : (tensor<?x64xf32>, tensor<32x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @matmul_result(%a: tensor<?x64xf32>, %b: tensor<64x16xf32>) {
  // expected-error @+1 {{'tfm.matmul' op result has shape [?, 64] but [?, 16] was expected}}
  %0 = tfm.matmul %a, %b : (tensor<?x64xf32>, tensor<64x16xf32>) -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.add, tfm.mul
//===----------------------------------------------------------------------===//

// -----

func.func @add_not_suffix(%x: tensor<?x16xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{'tfm.add' op rhs shape [8] is not a suffix of lhs shape [?, 16]}}
  %0 = tfm.add %x, %b : (tensor<?x16xf32>, tensor<8xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @add_rhs_higher_rank(%x: tensor<16xf32>, %y: tensor<2x16xf32>) {
  // expected-error @+1 {{'tfm.add' op rhs shape [2, 16] is not a suffix of lhs shape [16]}}
  %0 = tfm.add %x, %y : (tensor<16xf32>, tensor<2x16xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @add_element_type(%x: tensor<?x16xf32>, %y: tensor<?x16xbf16>) {
  // expected-error @+1 {{'tfm.add' op rhs has element type 'bf16' but 'f32' was expected}}
  %0 = tfm.add %x, %y : (tensor<?x16xf32>, tensor<?x16xbf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @add_result_type(%x: tensor<?x16xf32>, %y: tensor<?x16xf32>) {
  // expected-error @+1 {{'tfm.add' op result type 'tensor<4x16xf32>' differs from lhs type 'tensor<?x16xf32>'}}
  %0 = tfm.add %x, %y : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @mul_not_suffix(%x: tensor<?x4x16xf32>, %y: tensor<2x16xf32>) {
  // expected-error @+1 {{'tfm.mul' op rhs shape [2, 16] is not a suffix of lhs shape [?, 4, 16]}}
  %0 = tfm.mul %x, %y : (tensor<?x4x16xf32>, tensor<2x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @mul_element_type(%x: tensor<?x16xbf16>, %y: tensor<16xf16>) {
  // expected-error @+1 {{'tfm.mul' op rhs has element type 'f16' but 'bf16' was expected}}
  %0 = tfm.mul %x, %y : (tensor<?x16xbf16>, tensor<16xf16>) -> tensor<?x16xbf16>
  return
}

// -----

func.func @mul_result_type(%x: tensor<?x16xbf16>, %y: tensor<?x16xbf16>) {
  // expected-error @+1 {{'tfm.mul' op result type 'tensor<?x16xf32>' differs from lhs type 'tensor<?x16xbf16>'}}
  %0 = tfm.mul %x, %y : (tensor<?x16xbf16>, tensor<?x16xbf16>) -> tensor<?x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.softmax, tfm.causal_mask
//===----------------------------------------------------------------------===//

// -----

func.func @softmax_dim(%x: tensor<4x?x?xf32>) {
  // expected-error @+1 {{'tfm.softmax' op dim 3 is out of range for rank 3}}
  %0 = tfm.softmax %x dim 3 : tensor<4x?x?xf32>
  return
}

// -----

func.func @softmax_negative_dim(%x: tensor<4x?x?xf32>) {
  // expected-error @+1 {{'tfm.softmax' op dim -1 is out of range for rank 3}}
  %0 = tfm.softmax %x dim -1 : tensor<4x?x?xf32>
  return
}

// -----

func.func @causal_mask_rank(%x: tensor<?xf32>) {
  // expected-error @+1 {{'tfm.causal_mask' op input must have rank 2 or more}}
  %0 = tfm.causal_mask %x : tensor<?xf32>
  return
}

// -----

func.func @causal_mask_window(%x: tensor<4x?x?xf32>) {
  // expected-error @+1 {{'tfm.causal_mask' op sliding_window must be positive, got -2}}
  %0 = tfm.causal_mask %x sliding_window -2 : tensor<4x?x?xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.transpose
//===----------------------------------------------------------------------===//

// -----

func.func @transpose_length(%x: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.transpose' op permutation has 2 entries but input has rank 3}}
  %0 = tfm.transpose %x [1, 0] : tensor<?x4x16xf32> -> tensor<4x?xf32>
  return
}

// -----

func.func @transpose_repeated(%x: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.transpose' op permutation [1, 1, 0] is not a permutation of the input dimensions}}
  %0 = tfm.transpose %x [1, 1, 0] : tensor<?x4x16xf32> -> tensor<4x4x?xf32>
  return
}

// -----

func.func @transpose_out_of_range(%x: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.transpose' op permutation [0, 3, 1] is not a permutation of the input dimensions}}
  %0 = tfm.transpose %x [0, 3, 1] : tensor<?x4x16xf32> -> tensor<?x16x4xf32>
  return
}

// -----

func.func @transpose_negative(%x: tensor<4x16xf32>) {
  // expected-error @+1 {{'tfm.transpose' op permutation [-1, 0] is not a permutation of the input dimensions}}
  %0 = tfm.transpose %x [-1, 0] : tensor<4x16xf32> -> tensor<16x4xf32>
  return
}

// -----

func.func @transpose_result_shape(%x: tensor<?x4x16xf32>) {
  // expected-error @+1 {{'tfm.transpose' op result has shape [4, 8, ?] but [4, 16, ?] was expected}}
  %0 = tfm.transpose %x [1, 2, 0] : tensor<?x4x16xf32> -> tensor<4x8x?xf32>
  return
}

// -----

func.func @transpose_element_type(%x: tensor<4x16xf32>) {
  // expected-error @+1 {{'tfm.transpose' op result has element type 'bf16' but 'f32' was expected}}
  %0 = tfm.transpose %x [1, 0] : tensor<4x16xf32> -> tensor<16x4xbf16>
  return
}

//===----------------------------------------------------------------------===//
// tfm.reshape
//===----------------------------------------------------------------------===//

// -----

func.func @reshape_element_type(%x: tensor<6x4xf32>) {
  // expected-error @+1 {{'tfm.reshape' op result element type 'bf16' differs from input element type 'f32'}}
  %0 = tfm.reshape %x : tensor<6x4xf32> -> tensor<24xbf16>
  return
}

// -----

func.func @reshape_count(%x: tensor<6x4xf32>) {
  // expected-error @+1 {{'tfm.reshape' op input [6, 4] and result [5, 5] have different element counts}}
  %0 = tfm.reshape %x : tensor<6x4xf32> -> tensor<5x5xf32>
  return
}

// -----

func.func @reshape_dynamic_product(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'tfm.reshape' op cannot reshape [?, 64] to [?, 4, 8]: a dynamic reshape keeps the leading dim and the product of the static trailing dims}}
  %0 = tfm.reshape %x : tensor<?x64xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @reshape_dynamic_trailing(%x: tensor<4x?xf32>) {
  // expected-error @+1 {{'tfm.reshape' op cannot reshape [4, ?] to [4, 2, ?]: a dynamic reshape keeps the leading dim and the product of the static trailing dims}}
  %0 = tfm.reshape %x : tensor<4x?xf32> -> tensor<4x2x?xf32>
  return
}

// -----

func.func @reshape_dynamic_to_scalar(%x: tensor<?xf32>) {
  // expected-error @+1 {{'tfm.reshape' op cannot reshape [?] to []: a dynamic reshape keeps the leading dim and the product of the static trailing dims}}
  %0 = tfm.reshape %x : tensor<?xf32> -> tensor<f32>
  return
}

// -----

func.func @reshape_leading(%x: tensor<6x?xf32>) {
  // expected-error @+1 {{'tfm.reshape' op cannot reshape [6, ?] to [?, 6]: a dynamic reshape keeps the leading dim and the product of the static trailing dims}}
  %0 = tfm.reshape %x : tensor<6x?xf32> -> tensor<?x6xf32>
  return
}

// -----

func.func @reshape_leading_changed(%x: tensor<6x4xf32>) {
  // expected-error @+1 {{'tfm.reshape' op cannot reshape [6, 4] to [?, 8]: a dynamic reshape keeps the leading dim and the product of the static trailing dims}}
  %0 = tfm.reshape %x : tensor<6x4xf32> -> tensor<?x8xf32>
  return
}

//===----------------------------------------------------------------------===//
// tfm.repeat
//===----------------------------------------------------------------------===//

// -----

func.func @repeat_dim(%x: tensor<?x2x64xf32>) {
  // expected-error @+1 {{'tfm.repeat' op dim 3 is out of range for rank 3}}
  %0 = tfm.repeat %x dim 3 times 2 : tensor<?x2x64xf32> -> tensor<?x2x64xf32>
  return
}

// -----

func.func @repeat_times(%x: tensor<?x2x64xf32>) {
  // expected-error @+1 {{'tfm.repeat' op times must be at least 1, got 0}}
  %0 = tfm.repeat %x dim 1 times 0 : tensor<?x2x64xf32> -> tensor<?x0x64xf32>
  return
}

// -----

func.func @repeat_negative_times(%x: tensor<?x2x64xf32>) {
  // expected-error @+1 {{'tfm.repeat' op times must be at least 1, got -1}}
  %0 = tfm.repeat %x dim 1 times -1 : tensor<?x2x64xf32> -> tensor<?x2x64xf32>
  return
}

// -----

func.func @repeat_negative_dim(%x: tensor<?x2x64xf32>) {
  // expected-error @+1 {{'tfm.repeat' op dim -1 is out of range for rank 3}}
  %0 = tfm.repeat %x dim -1 times 2 : tensor<?x2x64xf32> -> tensor<?x2x64xf32>
  return
}

// -----

func.func @repeat_result_shape(%x: tensor<?x2x64xf32>) {
  // expected-error @+1 {{'tfm.repeat' op result has shape [?, 4, 64] but [?, 6, 64] was expected}}
  %0 = tfm.repeat %x dim 1 times 3 : tensor<?x2x64xf32> -> tensor<?x4x64xf32>
  return
}

// -----

func.func @repeat_element_type(%x: tensor<?x2x64xf32>) {
  // expected-error @+1 {{'tfm.repeat' op result has element type 'bf16' but 'f32' was expected}}
  %0 = tfm.repeat %x dim 1 times 3 : tensor<?x2x64xf32> -> tensor<?x6x64xbf16>
  return
}

//===----------------------------------------------------------------------===//
// tfm.split
//===----------------------------------------------------------------------===//

// -----

func.func @split_dim(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op dim 2 is out of range for rank 2}}
  %0 = tfm.split %x dim 2 : tensor<?x96xf32> -> tensor<?x96xf32>
  return
}

// -----

func.func @split_negative_dim(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op dim -1 is out of range for rank 2}}
  %0 = tfm.split %x dim -1 : tensor<?x96xf32> -> tensor<?x96xf32>
  return
}

// -----

func.func @split_no_results(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op needs at least one result}}
  "tfm.split"(%x) <{dim = 1 : i64}> : (tensor<?x96xf32>) -> ()
  return
}

// -----

func.func @split_dynamic_dim(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op input dim 0 must be static}}
  %0:2 = tfm.split %x dim 0 : tensor<?x96xf32> -> tensor<2x96xf32>, tensor<3x96xf32>
  return
}

// -----

func.func @split_result_rank(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op result 1 must have rank 2 and a static size in dim 1}}
  %0:2 = tfm.split %x dim 1 : tensor<?x96xf32> -> tensor<?x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @split_result_dynamic(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op result 0 must have rank 2 and a static size in dim 1}}
  %0:2 = tfm.split %x dim 1 : tensor<?x96xf32> -> tensor<?x?xf32>, tensor<?x32xf32>
  return
}

// -----

func.func @split_result_other_dim(%x: tensor<8x96xf32>) {
  // expected-error @+1 {{'tfm.split' op result 1 has shape [4, 32] but [8, 32] was expected}}
  %0:2 = tfm.split %x dim 1 : tensor<8x96xf32> -> tensor<8x64xf32>, tensor<4x32xf32>
  return
}

// -----

func.func @split_result_element_type(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op result 0 has element type 'bf16' but 'f32' was expected}}
  %0:2 = tfm.split %x dim 1 : tensor<?x96xf32> -> tensor<?x64xbf16>, tensor<?x32xf32>
  return
}

// -----

func.func @split_sum(%x: tensor<?x96xf32>) {
  // expected-error @+1 {{'tfm.split' op results add up to 80 along dim 1 but the input has 96}}
  %0:3 = tfm.split %x dim 1 : tensor<?x96xf32> -> tensor<?x64xf32>, tensor<?x8xf32>, tensor<?x8xf32>
  return
}

//===----------------------------------------------------------------------===//
// !tfm.kv_cache
//===----------------------------------------------------------------------===//

// -----

// expected-error @+1 {{kv_cache sizes must be positive, got layers = 0, kv_heads = 2, head_dim = 64, block_size = 16}}
func.func @kv_cache_layers(%c: !tfm.kv_cache<layers = 0, kv_heads = 2, head_dim = 64, block_size = 16, element_type = bf16>)

// -----

// expected-error @+1 {{kv_cache sizes must be positive, got layers = 6, kv_heads = -2, head_dim = 64, block_size = 16}}
func.func @kv_cache_kv_heads(%c: !tfm.kv_cache<layers = 6, kv_heads = -2, head_dim = 64, block_size = 16, element_type = bf16>)

// -----

// expected-error @+1 {{kv_cache sizes must be positive, got layers = 6, kv_heads = 2, head_dim = 0, block_size = 16}}
func.func @kv_cache_head_dim(%c: !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 0, block_size = 16, element_type = bf16>)

// -----

// expected-error @+1 {{kv_cache sizes must be positive, got layers = 6, kv_heads = 2, head_dim = 64, block_size = 0}}
func.func @kv_cache_block_size(%c: !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 0, element_type = bf16>)

// -----

// expected-error @+1 {{kv_cache element_type must be a float or integer type, got 'index'}}
func.func @kv_cache_element_type(%c: !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16, element_type = index>)

// -----

func.func @attention_cache_kv_heads(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op kv_cache has 4 kv heads, the key 2}}
  %0 = tfm.attention %q, %k, %v scale 0.25 causal kv_cache !tfm.kv_cache<layers = 1, kv_heads = 4, head_dim = 16, block_size = 16, element_type = f32> : (tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_cache_head_dim(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op kv_cache head_dim 32 differs from the key head dim 16}}
  %0 = tfm.attention %q, %k, %v scale 0.25 causal kv_cache !tfm.kv_cache<layers = 1, kv_heads = 2, head_dim = 32, block_size = 16, element_type = f32> : (tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_cache_block_size(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op kv_cache block_size must be a power of two up to 1024, got 24}}
  %0 = tfm.attention %q, %k, %v scale 0.25 causal kv_cache !tfm.kv_cache<layers = 1, kv_heads = 2, head_dim = 16, block_size = 24, element_type = f32> : (tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @attention_cache_element_type(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>) {
  // expected-error @+1 {{'tfm.attention' op kv_cache element_type must be f32, bf16, f16, f8E4M3FN or i8, got 'i4'}}
  %0 = tfm.attention %q, %k, %v scale 0.25 causal kv_cache !tfm.kv_cache<layers = 1, kv_heads = 2, head_dim = 16, block_size = 16, element_type = i4> : (tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>) -> tensor<?x4x16xf32>
  return
}
