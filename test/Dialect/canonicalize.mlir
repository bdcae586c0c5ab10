// RUN: optmlir-opt %s -canonicalize -split-input-file | FileCheck %s

//===----------------------------------------------------------------------===//
// Folders
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @transpose_identity
// CHECK-SAME: (%[[X:.*]]: tensor<?x4x16xf32>)
// CHECK-NOT: tfm.transpose
// CHECK: return %[[X]]
func.func @transpose_identity(%x: tensor<?x4x16xf32>) -> tensor<?x4x16xf32> {
  %0 = tfm.transpose %x [0, 1, 2] : tensor<?x4x16xf32> -> tensor<?x4x16xf32>
  return %0 : tensor<?x4x16xf32>
}

// -----

// The identity permutation with a more static result type is a cast of the
// type, not a no-op: it stays.
// CHECK-LABEL: func.func @transpose_identity_refines_type
// CHECK: %[[T:.*]] = tfm.transpose %{{.*}} [0, 1] : tensor<?x4xf32> -> tensor<3x4xf32>
// CHECK: return %[[T]]
func.func @transpose_identity_refines_type(%x: tensor<?x4xf32>) -> tensor<3x4xf32> {
  %0 = tfm.transpose %x [0, 1] : tensor<?x4xf32> -> tensor<3x4xf32>
  return %0 : tensor<3x4xf32>
}

// -----

// CHECK-LABEL: func.func @transpose_of_inverse_transpose
// CHECK-SAME: (%[[X:.*]]: tensor<?x4x16xf32>)
// CHECK-NOT: tfm.transpose
// CHECK: return %[[X]]
func.func @transpose_of_inverse_transpose(%x: tensor<?x4x16xf32>) -> tensor<?x4x16xf32> {
  %0 = tfm.transpose %x [1, 2, 0] : tensor<?x4x16xf32> -> tensor<4x16x?xf32>
  %1 = tfm.transpose %0 [2, 0, 1] : tensor<4x16x?xf32> -> tensor<?x4x16xf32>
  return %1 : tensor<?x4x16xf32>
}

// -----

// [1, 2, 0] twice is [2, 0, 1], not the identity.
// CHECK-LABEL: func.func @transpose_of_transpose_not_inverse
// CHECK-SAME: (%[[X:.*]]: tensor<2x3x4xf32>)
// CHECK: %[[T0:.*]] = tfm.transpose %[[X]] [1, 2, 0] : tensor<2x3x4xf32> -> tensor<3x4x2xf32>
// CHECK: %[[T1:.*]] = tfm.transpose %[[T0]] [1, 2, 0] : tensor<3x4x2xf32> -> tensor<4x2x3xf32>
// CHECK: return %[[T1]]
func.func @transpose_of_transpose_not_inverse(%x: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
  %0 = tfm.transpose %x [1, 2, 0] : tensor<2x3x4xf32> -> tensor<3x4x2xf32>
  %1 = tfm.transpose %0 [1, 2, 0] : tensor<3x4x2xf32> -> tensor<4x2x3xf32>
  return %1 : tensor<4x2x3xf32>
}

// -----

// Two transposes that are not inverse, but whose composition maps a
// square input to the same type: they must stay.
// CHECK-LABEL: func.func @transpose_of_transpose_same_type
// CHECK: tfm.transpose %{{.*}} [1, 2, 0] : tensor<4x4x4xf32> -> tensor<4x4x4xf32>
// CHECK: tfm.transpose %{{.*}} [1, 2, 0] : tensor<4x4x4xf32> -> tensor<4x4x4xf32>
func.func @transpose_of_transpose_same_type(%x: tensor<4x4x4xf32>) -> tensor<4x4x4xf32> {
  %0 = tfm.transpose %x [1, 2, 0] : tensor<4x4x4xf32> -> tensor<4x4x4xf32>
  %1 = tfm.transpose %0 [1, 2, 0] : tensor<4x4x4xf32> -> tensor<4x4x4xf32>
  return %1 : tensor<4x4x4xf32>
}

// -----

// CHECK-LABEL: func.func @reshape_same_type
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>)
// CHECK-NOT: tfm.reshape
// CHECK: return %[[X]]
func.func @reshape_same_type(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %0 = tfm.reshape %x : tensor<?x64xbf16> -> tensor<?x64xbf16>
  return %0 : tensor<?x64xbf16>
}

// -----

// CHECK-LABEL: func.func @reshape_round_trip
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>)
// CHECK-NOT: tfm.reshape
// CHECK: return %[[X]]
func.func @reshape_round_trip(%x: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %0 = tfm.reshape %x : tensor<?x64xbf16> -> tensor<?x4x16xbf16>
  %1 = tfm.reshape %0 : tensor<?x4x16xbf16> -> tensor<?x64xbf16>
  return %1 : tensor<?x64xbf16>
}

// -----

// CHECK-LABEL: func.func @reshape_of_reshape
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>)
// CHECK-NEXT: %[[R:.*]] = tfm.reshape %[[X]] : tensor<?x64xbf16> -> tensor<?x2x2x16xbf16>
// CHECK-NEXT: return %[[R]]
func.func @reshape_of_reshape(%x: tensor<?x64xbf16>) -> tensor<?x2x2x16xbf16> {
  %0 = tfm.reshape %x : tensor<?x64xbf16> -> tensor<?x4x16xbf16>
  %1 = tfm.reshape %0 : tensor<?x4x16xbf16> -> tensor<?x2x2x16xbf16>
  return %1 : tensor<?x2x2x16xbf16>
}

// -----

// CHECK-LABEL: func.func @reshape_of_reshape_static
// CHECK-SAME: (%[[X:.*]]: tensor<6x4xf32>)
// CHECK-NEXT: %[[R:.*]] = tfm.reshape %[[X]] : tensor<6x4xf32> -> tensor<3x8xf32>
// CHECK-NEXT: return %[[R]]
func.func @reshape_of_reshape_static(%x: tensor<6x4xf32>) -> tensor<3x8xf32> {
  %0 = tfm.reshape %x : tensor<6x4xf32> -> tensor<24xf32>
  %1 = tfm.reshape %0 : tensor<24xf32> -> tensor<3x8xf32>
  return %1 : tensor<3x8xf32>
}

// -----

// The inner reshape fixes the token count, so the outer one may change the
// leading dim; a single [?, 6] -> [3, 8] reshape would not be valid.
// CHECK-LABEL: func.func @reshape_of_reshape_not_mergeable
// CHECK-SAME: (%[[X:.*]]: tensor<?x6xf32>)
// CHECK: %[[R0:.*]] = tfm.reshape %[[X]] : tensor<?x6xf32> -> tensor<4x6xf32>
// CHECK: %[[R1:.*]] = tfm.reshape %[[R0]] : tensor<4x6xf32> -> tensor<3x8xf32>
// CHECK: return %[[R1]]
func.func @reshape_of_reshape_not_mergeable(%x: tensor<?x6xf32>) -> tensor<3x8xf32> {
  %0 = tfm.reshape %x : tensor<?x6xf32> -> tensor<4x6xf32>
  %1 = tfm.reshape %0 : tensor<4x6xf32> -> tensor<3x8xf32>
  return %1 : tensor<3x8xf32>
}

// -----

// CHECK-LABEL: func.func @scale_by_one
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>)
// CHECK-NOT: tfm.scale
// CHECK: return %[[X]]
func.func @scale_by_one(%x: tensor<?x16xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.scale %x by 1.0 : tensor<?x16xbf16>
  return %0 : tensor<?x16xbf16>
}

// -----

// CHECK-LABEL: func.func @scale_by_two
// CHECK: %[[S:.*]] = tfm.scale %{{.*}} by 2.000000e+00 : tensor<?x16xbf16>
// CHECK: return %[[S]]
func.func @scale_by_two(%x: tensor<?x16xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.scale %x by 2.0 : tensor<?x16xbf16>
  return %0 : tensor<?x16xbf16>
}

// -----

// CHECK-LABEL: func.func @cast_same_type
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>)
// CHECK-NOT: tfm.cast
// CHECK: return %[[X]]
func.func @cast_same_type(%x: tensor<?x16xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.cast %x : tensor<?x16xbf16> to tensor<?x16xbf16>
  return %0 : tensor<?x16xbf16>
}

// -----

// A cast round trip through a narrower type rounds: it must stay.
// CHECK-LABEL: func.func @cast_round_trip
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>)
// CHECK: %[[N:.*]] = tfm.cast %[[X]] : tensor<?x16xf32> to tensor<?x16xbf16>
// CHECK: %[[W:.*]] = tfm.cast %[[N]] : tensor<?x16xbf16> to tensor<?x16xf32>
// CHECK: return %[[W]]
func.func @cast_round_trip(%x: tensor<?x16xf32>) -> tensor<?x16xf32> {
  %0 = tfm.cast %x : tensor<?x16xf32> to tensor<?x16xbf16>
  %1 = tfm.cast %0 : tensor<?x16xbf16> to tensor<?x16xf32>
  return %1 : tensor<?x16xf32>
}

//===----------------------------------------------------------------------===//
// matmul(x, transpose(w)) -> linear
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @matmul_transposed_to_linear
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<16x64xbf16>)
// CHECK-NEXT: %[[L:.*]] = tfm.linear %[[X]], %[[W]] : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> tensor<?x16xbf16>
// CHECK-NEXT: return %[[L]]
func.func @matmul_transposed_to_linear(%x: tensor<?x64xbf16>, %w: tensor<16x64xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.transpose %w [1, 0] : tensor<16x64xbf16> -> tensor<64x16xbf16>
  %1 = tfm.matmul %x, %0 : (tensor<?x64xbf16>, tensor<64x16xbf16>) -> tensor<?x16xbf16>
  return %1 : tensor<?x16xbf16>
}

// -----

// A weight read from the store, as the importer writes it.
tfm.weight @w : tensor<16x64xbf16>
// CHECK-LABEL: func.func @matmul_transposed_weight
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>)
// CHECK: %[[W:.*]] = tfm.get_weight @w : tensor<16x64xbf16>
// CHECK-NEXT: %[[L:.*]] = tfm.linear %[[X]], %[[W]] : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> tensor<?x16xbf16>
// CHECK-NOT: tfm.transpose
// CHECK-NOT: tfm.matmul
func.func @matmul_transposed_weight(%x: tensor<?x64xbf16>) -> tensor<?x16xbf16> {
  %w = tfm.get_weight @w : tensor<16x64xbf16>
  %0 = tfm.transpose %w [1, 0] : tensor<16x64xbf16> -> tensor<64x16xbf16>
  %1 = tfm.matmul %x, %0 : (tensor<?x64xbf16>, tensor<64x16xbf16>) -> tensor<?x16xbf16>
  return %1 : tensor<?x16xbf16>
}

// -----

// A batched (3-D) matmul by a transposed rhs is attention, not a linear layer.
// CHECK-LABEL: func.func @matmul_3d_not_linear
// CHECK: tfm.transpose %{{.*}} [0, 2, 1]
// CHECK: tfm.matmul
// CHECK-NOT: tfm.linear
func.func @matmul_3d_not_linear(%q: tensor<4x?x16xf32>, %k: tensor<4x?x16xf32>) -> tensor<4x?x?xf32> {
  %0 = tfm.transpose %k [0, 2, 1] : tensor<4x?x16xf32> -> tensor<4x16x?xf32>
  %1 = tfm.matmul %q, %0 : (tensor<4x?x16xf32>, tensor<4x16x?xf32>) -> tensor<4x?x?xf32>
  return %1 : tensor<4x?x?xf32>
}

// -----

// CHECK-LABEL: func.func @matmul_not_transposed
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[W:.*]]: tensor<64x16xf32>)
// CHECK: %[[M:.*]] = tfm.matmul %[[X]], %[[W]]
// CHECK-NOT: tfm.linear
func.func @matmul_not_transposed(%x: tensor<?x64xf32>, %w: tensor<64x16xf32>) -> tensor<?x16xf32> {
  %0 = tfm.matmul %x, %w : (tensor<?x64xf32>, tensor<64x16xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// The transposed operand is the lhs: x^T w is not a linear layer of x.
// CHECK-LABEL: func.func @matmul_transposed_lhs
// CHECK: tfm.transpose
// CHECK: tfm.matmul
// CHECK-NOT: tfm.linear
func.func @matmul_transposed_lhs(%x: tensor<64x8xf32>, %w: tensor<64x16xf32>) -> tensor<8x16xf32> {
  %0 = tfm.transpose %x [1, 0] : tensor<64x8xf32> -> tensor<8x64xf32>
  %1 = tfm.matmul %0, %w : (tensor<8x64xf32>, tensor<64x16xf32>) -> tensor<8x16xf32>
  return %1 : tensor<8x16xf32>
}

//===----------------------------------------------------------------------===//
// add(linear, bias) -> linear with bias
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @add_bias_to_linear
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[W:.*]]: tensor<16x64xbf16>, %[[B:.*]]: tensor<16xbf16>)
// CHECK-NEXT: %[[L:.*]] = tfm.linear %[[X]], %[[W]] bias %[[B]] : (tensor<?x64xbf16>, tensor<16x64xbf16>, tensor<16xbf16>) -> tensor<?x16xbf16>
// CHECK-NEXT: return %[[L]]
func.func @add_bias_to_linear(%x: tensor<?x64xbf16>, %w: tensor<16x64xbf16>, %b: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %0 = tfm.linear %x, %w : (tensor<?x64xbf16>, tensor<16x64xbf16>) -> tensor<?x16xbf16>
  %1 = tfm.add %0, %b : (tensor<?x16xbf16>, tensor<16xbf16>) -> tensor<?x16xbf16>
  return %1 : tensor<?x16xbf16>
}

// -----

// Both patterns together: a decomposed biased projection becomes one op.
// CHECK-LABEL: func.func @matmul_add_to_linear_bias
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[W:.*]]: tensor<16x64xf32>, %[[B:.*]]: tensor<16xf32>)
// CHECK-NEXT: %[[L:.*]] = tfm.linear %[[X]], %[[W]] bias %[[B]] : (tensor<?x64xf32>, tensor<16x64xf32>, tensor<16xf32>) -> tensor<?x16xf32>
// CHECK-NEXT: return %[[L]]
func.func @matmul_add_to_linear_bias(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>, %b: tensor<16xf32>) -> tensor<?x16xf32> {
  %0 = tfm.transpose %w [1, 0] : tensor<16x64xf32> -> tensor<64x16xf32>
  %1 = tfm.matmul %x, %0 : (tensor<?x64xf32>, tensor<64x16xf32>) -> tensor<?x16xf32>
  %2 = tfm.add %1, %b : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return %2 : tensor<?x16xf32>
}

// -----

// The bias-free result is used elsewhere: folding the bias in would change it.
// CHECK-LABEL: func.func @add_bias_linear_two_uses
// CHECK: %[[L:.*]] = tfm.linear %{{.*}}, %{{.*}} : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<?x16xf32>
// CHECK: %[[A:.*]] = tfm.add %[[L]], %{{.*}} : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
// CHECK: return %[[L]], %[[A]]
func.func @add_bias_linear_two_uses(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>, %b: tensor<16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>) {
  %0 = tfm.linear %x, %w : (tensor<?x64xf32>, tensor<16x64xf32>) -> tensor<?x16xf32>
  %1 = tfm.add %0, %b : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return %0, %1 : tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @add_bias_linear_has_bias
// CHECK: %[[L:.*]] = tfm.linear %{{.*}}, %{{.*}} bias %{{.*}} :
// CHECK: %[[A:.*]] = tfm.add %[[L]], %{{.*}} : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
// CHECK: return %[[A]]
func.func @add_bias_linear_has_bias(%x: tensor<?x64xf32>, %w: tensor<16x64xf32>, %b: tensor<16xf32>, %c: tensor<16xf32>) -> tensor<?x16xf32> {
  %0 = tfm.linear %x, %w bias %b : (tensor<?x64xf32>, tensor<16x64xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  %1 = tfm.add %0, %c : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return %1 : tensor<?x16xf32>
}

// -----

// A full-shape addend (a residual connection) is not a bias.
// CHECK-LABEL: func.func @add_residual_not_bias
// CHECK: %[[L:.*]] = tfm.linear %{{.*}}, %{{.*}} : (tensor<?x16xf32>, tensor<16x16xf32>) -> tensor<?x16xf32>
// CHECK: %[[A:.*]] = tfm.add %[[L]], %{{.*}} : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
// CHECK: return %[[A]]
func.func @add_residual_not_bias(%x: tensor<?x16xf32>, %w: tensor<16x16xf32>) -> tensor<?x16xf32> {
  %0 = tfm.linear %x, %w : (tensor<?x16xf32>, tensor<16x16xf32>) -> tensor<?x16xf32>
  %1 = tfm.add %0, %x : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  return %1 : tensor<?x16xf32>
}

//===----------------------------------------------------------------------===//
// mul(silu(g), u) -> swiglu
//===----------------------------------------------------------------------===//

// -----

// CHECK-LABEL: func.func @silu_times_up
// CHECK-SAME: (%[[G:.*]]: tensor<?x128xbf16>, %[[U:.*]]: tensor<?x128xbf16>)
// CHECK-NEXT: %[[S:.*]] = tfm.swiglu %[[G]], %[[U]] : tensor<?x128xbf16>
// CHECK-NEXT: return %[[S]]
func.func @silu_times_up(%g: tensor<?x128xbf16>, %u: tensor<?x128xbf16>) -> tensor<?x128xbf16> {
  %0 = tfm.silu %g : tensor<?x128xbf16>
  %1 = tfm.mul %0, %u : (tensor<?x128xbf16>, tensor<?x128xbf16>) -> tensor<?x128xbf16>
  return %1 : tensor<?x128xbf16>
}

// -----

// CHECK-LABEL: func.func @up_times_silu
// CHECK-SAME: (%[[G:.*]]: tensor<?x128xbf16>, %[[U:.*]]: tensor<?x128xbf16>)
// CHECK-NEXT: %[[S:.*]] = tfm.swiglu %[[G]], %[[U]] : tensor<?x128xbf16>
// CHECK-NEXT: return %[[S]]
func.func @up_times_silu(%g: tensor<?x128xbf16>, %u: tensor<?x128xbf16>) -> tensor<?x128xbf16> {
  %0 = tfm.silu %g : tensor<?x128xbf16>
  %1 = tfm.mul %u, %0 : (tensor<?x128xbf16>, tensor<?x128xbf16>) -> tensor<?x128xbf16>
  return %1 : tensor<?x128xbf16>
}

// -----

// The silu result has another use: it stays, and the product still becomes
// a swiglu.
// CHECK-LABEL: func.func @silu_two_uses
// CHECK-SAME: (%[[G:.*]]: tensor<?x128xf32>, %[[U:.*]]: tensor<?x128xf32>)
// CHECK-DAG: %[[A:.*]] = tfm.silu %[[G]] : tensor<?x128xf32>
// CHECK-DAG: %[[S:.*]] = tfm.swiglu %[[G]], %[[U]] : tensor<?x128xf32>
// CHECK: return %[[S]], %[[A]]
func.func @silu_two_uses(%g: tensor<?x128xf32>, %u: tensor<?x128xf32>) -> (tensor<?x128xf32>, tensor<?x128xf32>) {
  %0 = tfm.silu %g : tensor<?x128xf32>
  %1 = tfm.mul %0, %u : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
  return %1, %0 : tensor<?x128xf32>, tensor<?x128xf32>
}

// -----

// A broadcasting product is not a SwiGLU (whose operands have one type).
// CHECK-LABEL: func.func @silu_times_broadcast
// CHECK: %[[A:.*]] = tfm.silu %{{.*}} : tensor<?x128xf32>
// CHECK: %[[M:.*]] = tfm.mul %[[A]], %{{.*}} : (tensor<?x128xf32>, tensor<128xf32>) -> tensor<?x128xf32>
// CHECK-NOT: tfm.swiglu
// CHECK: return %[[M]]
func.func @silu_times_broadcast(%g: tensor<?x128xf32>, %u: tensor<128xf32>) -> tensor<?x128xf32> {
  %0 = tfm.silu %g : tensor<?x128xf32>
  %1 = tfm.mul %0, %u : (tensor<?x128xf32>, tensor<128xf32>) -> tensor<?x128xf32>
  return %1 : tensor<?x128xf32>
}

// -----

// Equal shapes but one dynamic and one static: not the same type either.
// CHECK-LABEL: func.func @silu_times_refined_shape
// CHECK: tfm.mul
// CHECK-NOT: tfm.swiglu
func.func @silu_times_refined_shape(%g: tensor<?x128xf32>, %u: tensor<4x128xf32>) -> tensor<?x128xf32> {
  %0 = tfm.silu %g : tensor<?x128xf32>
  %1 = tfm.mul %0, %u : (tensor<?x128xf32>, tensor<4x128xf32>) -> tensor<?x128xf32>
  return %1 : tensor<?x128xf32>
}

// -----

// CHECK-LABEL: func.func @mul_without_silu
// CHECK: %[[M:.*]] = tfm.mul
// CHECK-NOT: tfm.swiglu
// CHECK: return %[[M]]
func.func @mul_without_silu(%g: tensor<?x128xf32>, %u: tensor<?x128xf32>) -> tensor<?x128xf32> {
  %0 = tfm.mul %g, %u : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
  return %0 : tensor<?x128xf32>
}
