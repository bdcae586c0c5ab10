// RUN: optmlir-opt %s -tfm-decompose -split-input-file | FileCheck %s
// RUN: optmlir-opt %s -tfm-decompose=ops=attention -split-input-file | FileCheck %s --check-prefix=ONLY-ATTN
// RUN: not optmlir-opt %s -tfm-decompose=ops=rope 2>&1 | FileCheck %s --check-prefix=BAD-OP

// BAD-OP: tfm-decompose: unknown op 'rope' (expected attention, linear or swiglu)

// Grouped-query attention: key/value heads are repeated for their group.
// CHECK-LABEL: func.func @gqa
// CHECK-SAME: (%[[Q:.*]]: tensor<?x6x64xbf16>, %[[K:.*]]: tensor<?x2x64xbf16>, %[[V:.*]]: tensor<?x2x64xbf16>)
// CHECK: %[[QT:.*]] = tfm.transpose %[[Q]] [1, 0, 2] : tensor<?x6x64xbf16> -> tensor<6x?x64xbf16>
// CHECK: %[[KR:.*]] = tfm.repeat %[[K]] dim 1 times 3 : tensor<?x2x64xbf16> -> tensor<?x6x64xbf16>
// CHECK: %[[KT:.*]] = tfm.transpose %[[KR]] [1, 2, 0] : tensor<?x6x64xbf16> -> tensor<6x64x?xbf16>
// CHECK: %[[VR:.*]] = tfm.repeat %[[V]] dim 1 times 3
// CHECK: %[[VT:.*]] = tfm.transpose %[[VR]] [1, 0, 2]
// CHECK: %[[S:.*]] = tfm.matmul %[[QT]], %[[KT]] : (tensor<6x?x64xbf16>, tensor<6x64x?xbf16>) -> tensor<6x?x?xbf16>
// CHECK: %[[SS:.*]] = tfm.scale %[[S]] by 1.250000e-01
// CHECK: %[[M:.*]] = tfm.causal_mask %[[SS]] sliding_window 4096
// CHECK: %[[P:.*]] = tfm.softmax %[[M]] dim 2
// CHECK: %[[O:.*]] = tfm.matmul %[[P]], %[[VT]] : (tensor<6x?x?xbf16>, tensor<6x?x64xbf16>) -> tensor<6x?x64xbf16>
// CHECK: %[[R:.*]] = tfm.transpose %[[O]] [1, 0, 2] : tensor<6x?x64xbf16> -> tensor<?x6x64xbf16>
// CHECK: return %[[R]]
// CHECK-NOT: tfm.attention
// ONLY-ATTN-LABEL: func.func @gqa
// ONLY-ATTN-NOT: tfm.attention
func.func @gqa(%q: tensor<?x6x64xbf16>, %k: tensor<?x2x64xbf16>, %v: tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16> {
  %0 = tfm.attention %q, %k, %v scale 1.250000e-01 causal sliding_window 4096 : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
  return %0 : tensor<?x6x64xbf16>
}

// -----

// Multi-head attention without a mask: no repetition, no causal_mask.
// CHECK-LABEL: func.func @mha_not_causal
// CHECK-NOT: tfm.repeat
// CHECK-NOT: tfm.causal_mask
// CHECK: tfm.softmax
// CHECK-NOT: tfm.attention
func.func @mha_not_causal(%q: tensor<5x4x32xf32>, %k: tensor<5x4x32xf32>, %v: tensor<5x4x32xf32>) -> tensor<5x4x32xf32> {
  %0 = tfm.attention %q, %k, %v scale 2.500000e-01 : (tensor<5x4x32xf32>, tensor<5x4x32xf32>, tensor<5x4x32xf32>) -> tensor<5x4x32xf32>
  return %0 : tensor<5x4x32xf32>
}

// -----

// CHECK-LABEL: func.func @linear_with_bias
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xf32>, %[[W:.*]]: tensor<8x16xf32>, %[[B:.*]]: tensor<8xf32>)
// CHECK: %[[WT:.*]] = tfm.transpose %[[W]] [1, 0] : tensor<8x16xf32> -> tensor<16x8xf32>
// CHECK: %[[Y:.*]] = tfm.matmul %[[X]], %[[WT]] : (tensor<?x16xf32>, tensor<16x8xf32>) -> tensor<?x8xf32>
// CHECK: %[[R:.*]] = tfm.add %[[Y]], %[[B]] : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
// CHECK: return %[[R]]
// ONLY-ATTN-LABEL: func.func @linear_with_bias
// ONLY-ATTN: tfm.linear
func.func @linear_with_bias(%x: tensor<?x16xf32>, %w: tensor<8x16xf32>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %0 = tfm.linear %x, %w bias %b : (tensor<?x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[G:.*]]: tensor<?x32xbf16>, %[[U:.*]]: tensor<?x32xbf16>)
// CHECK: %[[S:.*]] = tfm.silu %[[G]] : tensor<?x32xbf16>
// CHECK: %[[R:.*]] = tfm.mul %[[S]], %[[U]]
// CHECK: return %[[R]]
// ONLY-ATTN-LABEL: func.func @swiglu
// ONLY-ATTN: tfm.swiglu
func.func @swiglu(%g: tensor<?x32xbf16>, %u: tensor<?x32xbf16>) -> tensor<?x32xbf16> {
  %0 = tfm.swiglu %g, %u : tensor<?x32xbf16>
  return %0 : tensor<?x32xbf16>
}
