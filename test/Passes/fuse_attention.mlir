// RUN: optmlir-opt %s -tfm-fuse-attention -split-input-file | FileCheck %s

// Decomposed grouped-query attention with a sliding window.
// CHECK-LABEL: func.func @gqa
// CHECK-SAME: (%[[Q:.*]]: tensor<?x6x64xbf16>, %[[K:.*]]: tensor<?x2x64xbf16>, %[[V:.*]]: tensor<?x2x64xbf16>)
// CHECK-NEXT: %[[A:.*]] = tfm.attention %[[Q]], %[[K]], %[[V]] scale 1.250000e-01 causal sliding_window 4096 : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
// CHECK-NEXT: return %[[A]]
func.func @gqa(%q: tensor<?x6x64xbf16>, %k: tensor<?x2x64xbf16>, %v: tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16> {
  %0 = tfm.transpose %q [1, 0, 2] : tensor<?x6x64xbf16> -> tensor<6x?x64xbf16>
  %1 = tfm.repeat %k dim 1 times 3 : tensor<?x2x64xbf16> -> tensor<?x6x64xbf16>
  %2 = tfm.transpose %1 [1, 2, 0] : tensor<?x6x64xbf16> -> tensor<6x64x?xbf16>
  %3 = tfm.repeat %v dim 1 times 3 : tensor<?x2x64xbf16> -> tensor<?x6x64xbf16>
  %4 = tfm.transpose %3 [1, 0, 2] : tensor<?x6x64xbf16> -> tensor<6x?x64xbf16>
  %5 = tfm.matmul %0, %2 : (tensor<6x?x64xbf16>, tensor<6x64x?xbf16>) -> tensor<6x?x?xbf16>
  %6 = tfm.scale %5 by 1.250000e-01 : tensor<6x?x?xbf16>
  %7 = tfm.causal_mask %6 sliding_window 4096 : tensor<6x?x?xbf16>
  %8 = tfm.softmax %7 dim 2 : tensor<6x?x?xbf16>
  %9 = tfm.matmul %8, %4 : (tensor<6x?x?xbf16>, tensor<6x?x64xbf16>) -> tensor<6x?x64xbf16>
  %10 = tfm.transpose %9 [1, 0, 2] : tensor<6x?x64xbf16> -> tensor<?x6x64xbf16>
  return %10 : tensor<?x6x64xbf16>
}

// -----

// Multi-query attention (one key/value head) without a scale op: scale 1.
// CHECK-LABEL: func.func @mqa_unscaled
// CHECK: tfm.attention %{{.*}}, %{{.*}}, %{{.*}} scale 1.000000e+00 causal : (tensor<7x4x16xf32>, tensor<7x1x16xf32>, tensor<7x1x16xf32>) -> tensor<7x4x16xf32>
// CHECK-NOT: tfm.softmax
func.func @mqa_unscaled(%q: tensor<7x4x16xf32>, %k: tensor<7x1x16xf32>, %v: tensor<7x1x16xf32>) -> tensor<7x4x16xf32> {
  %0 = tfm.transpose %q [1, 0, 2] : tensor<7x4x16xf32> -> tensor<4x7x16xf32>
  %1 = tfm.repeat %k dim 1 times 4 : tensor<7x1x16xf32> -> tensor<7x4x16xf32>
  %2 = tfm.transpose %1 [1, 2, 0] : tensor<7x4x16xf32> -> tensor<4x16x7xf32>
  %3 = tfm.repeat %v dim 1 times 4 : tensor<7x1x16xf32> -> tensor<7x4x16xf32>
  %4 = tfm.transpose %3 [1, 0, 2] : tensor<7x4x16xf32> -> tensor<4x7x16xf32>
  %5 = tfm.matmul %0, %2 : (tensor<4x7x16xf32>, tensor<4x16x7xf32>) -> tensor<4x7x7xf32>
  %6 = tfm.causal_mask %5 : tensor<4x7x7xf32>
  %7 = tfm.softmax %6 dim 2 : tensor<4x7x7xf32>
  %8 = tfm.matmul %7, %4 : (tensor<4x7x7xf32>, tensor<4x7x16xf32>) -> tensor<4x7x16xf32>
  %9 = tfm.transpose %8 [1, 0, 2] : tensor<4x7x16xf32> -> tensor<7x4x16xf32>
  return %9 : tensor<7x4x16xf32>
}

// -----

// Multi-head attention without a mask.
// CHECK-LABEL: func.func @mha_not_causal
// CHECK: tfm.attention %{{.*}}, %{{.*}}, %{{.*}} scale 2.500000e-01 :
func.func @mha_not_causal(%q: tensor<5x4x32xf32>, %k: tensor<5x4x32xf32>, %v: tensor<5x4x32xf32>) -> tensor<5x4x32xf32> {
  %0 = tfm.transpose %q [1, 0, 2] : tensor<5x4x32xf32> -> tensor<4x5x32xf32>
  %1 = tfm.transpose %k [1, 2, 0] : tensor<5x4x32xf32> -> tensor<4x32x5xf32>
  %2 = tfm.transpose %v [1, 0, 2] : tensor<5x4x32xf32> -> tensor<4x5x32xf32>
  %3 = tfm.matmul %0, %1 : (tensor<4x5x32xf32>, tensor<4x32x5xf32>) -> tensor<4x5x5xf32>
  %4 = tfm.scale %3 by 2.500000e-01 : tensor<4x5x5xf32>
  %5 = tfm.softmax %4 dim 2 : tensor<4x5x5xf32>
  %6 = tfm.matmul %5, %2 : (tensor<4x5x5xf32>, tensor<4x5x32xf32>) -> tensor<4x5x32xf32>
  %7 = tfm.transpose %6 [1, 0, 2] : tensor<4x5x32xf32> -> tensor<5x4x32xf32>
  return %7 : tensor<5x4x32xf32>
}

// -----

// Key and value repeated differently: not attention, left alone.
// CHECK-LABEL: func.func @inconsistent_groups
// CHECK-NOT: tfm.attention
// CHECK: tfm.softmax
func.func @inconsistent_groups(%q: tensor<3x4x8xf32>, %k: tensor<3x2x8xf32>, %v: tensor<3x1x8xf32>) -> tensor<3x4x8xf32> {
  %0 = tfm.transpose %q [1, 0, 2] : tensor<3x4x8xf32> -> tensor<4x3x8xf32>
  %1 = tfm.repeat %k dim 1 times 2 : tensor<3x2x8xf32> -> tensor<3x4x8xf32>
  %2 = tfm.transpose %1 [1, 2, 0] : tensor<3x4x8xf32> -> tensor<4x8x3xf32>
  %3 = tfm.repeat %v dim 1 times 4 : tensor<3x1x8xf32> -> tensor<3x4x8xf32>
  %4 = tfm.transpose %3 [1, 0, 2] : tensor<3x4x8xf32> -> tensor<4x3x8xf32>
  %5 = tfm.matmul %0, %2 : (tensor<4x3x8xf32>, tensor<4x8x3xf32>) -> tensor<4x3x3xf32>
  %6 = tfm.softmax %5 dim 2 : tensor<4x3x3xf32>
  %7 = tfm.matmul %6, %4 : (tensor<4x3x3xf32>, tensor<4x3x8xf32>) -> tensor<4x3x8xf32>
  %8 = tfm.transpose %7 [1, 0, 2] : tensor<4x3x8xf32> -> tensor<3x4x8xf32>
  return %8 : tensor<3x4x8xf32>
}

// -----

// Softmax over the wrong dimension: not attention.
// CHECK-LABEL: func.func @softmax_over_queries
// CHECK-NOT: tfm.attention
func.func @softmax_over_queries(%q: tensor<5x4x32xf32>, %k: tensor<5x4x32xf32>, %v: tensor<5x4x32xf32>) -> tensor<5x4x32xf32> {
  %0 = tfm.transpose %q [1, 0, 2] : tensor<5x4x32xf32> -> tensor<4x5x32xf32>
  %1 = tfm.transpose %k [1, 2, 0] : tensor<5x4x32xf32> -> tensor<4x32x5xf32>
  %2 = tfm.transpose %v [1, 0, 2] : tensor<5x4x32xf32> -> tensor<4x5x32xf32>
  %3 = tfm.matmul %0, %1 : (tensor<4x5x32xf32>, tensor<4x32x5xf32>) -> tensor<4x5x5xf32>
  %5 = tfm.softmax %3 dim 1 : tensor<4x5x5xf32>
  %6 = tfm.matmul %5, %2 : (tensor<4x5x5xf32>, tensor<4x5x32xf32>) -> tensor<4x5x32xf32>
  %7 = tfm.transpose %6 [1, 0, 2] : tensor<4x5x32xf32> -> tensor<5x4x32xf32>
  return %7 : tensor<5x4x32xf32>
}
