// RUN: optmlir-opt %s -tfm-fuse-gate-up -split-input-file | FileCheck %s

// CHECK: tfm.weight @l.mlp.gate_up_proj.weight : tensor<2048x384xbf16> = concat [@l.mlp.gate_proj.weight, @l.mlp.up_proj.weight] dim 0
// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[X:.*]]: tensor<?x384xbf16>)
// CHECK: %[[W:.*]] = tfm.get_weight @l.mlp.gate_up_proj.weight : tensor<2048x384xbf16>
// CHECK-NEXT: %[[Y:.*]] = tfm.linear %[[X]], %[[W]] : (tensor<?x384xbf16>, tensor<2048x384xbf16>) -> tensor<?x2048xbf16>
// CHECK-NEXT: %[[S:.*]]:2 = tfm.split %[[Y]] dim 1 : tensor<?x2048xbf16> -> tensor<?x1024xbf16>, tensor<?x1024xbf16>
// CHECK-NEXT: %[[R:.*]] = tfm.swiglu %[[S]]#0, %[[S]]#1 : tensor<?x1024xbf16>
// CHECK-NEXT: return %[[R]]
module {
  tfm.weight @l.mlp.gate_proj.weight : tensor<1024x384xbf16>
  tfm.weight @l.mlp.up_proj.weight : tensor<1024x384xbf16>
  func.func @swiglu(%x: tensor<?x384xbf16>) -> tensor<?x1024xbf16> {
    %wg = tfm.get_weight @l.mlp.gate_proj.weight : tensor<1024x384xbf16>
    %wu = tfm.get_weight @l.mlp.up_proj.weight : tensor<1024x384xbf16>
    %g = tfm.linear %x, %wg : (tensor<?x384xbf16>, tensor<1024x384xbf16>) -> tensor<?x1024xbf16>
    %u = tfm.linear %x, %wu : (tensor<?x384xbf16>, tensor<1024x384xbf16>) -> tensor<?x1024xbf16>
    %s = tfm.swiglu %g, %u : tensor<?x1024xbf16>
    return %s : tensor<?x1024xbf16>
  }
}

// -----

// Weights that are not declared weights (function arguments) stay apart.
// CHECK-LABEL: func.func @argument_weights
// CHECK-COUNT-2: tfm.linear
// CHECK-NOT: tfm.split
func.func @argument_weights(%x: tensor<?x4xf32>, %wg: tensor<8x4xf32>, %wu: tensor<8x4xf32>) -> tensor<?x8xf32> {
  %g = tfm.linear %x, %wg : (tensor<?x4xf32>, tensor<8x4xf32>) -> tensor<?x8xf32>
  %u = tfm.linear %x, %wu : (tensor<?x4xf32>, tensor<8x4xf32>) -> tensor<?x8xf32>
  %s = tfm.swiglu %g, %u : tensor<?x8xf32>
  return %s : tensor<?x8xf32>
}

// -----

// Gate and up from different inputs stay apart.
// CHECK-LABEL: func.func @different_inputs
// CHECK-COUNT-2: tfm.linear
// CHECK-NOT: tfm.split
module {
  tfm.weight @d.gate_proj.weight : tensor<8x4xf32>
  tfm.weight @d.up_proj.weight : tensor<8x4xf32>
  func.func @different_inputs(%x: tensor<?x4xf32>, %y: tensor<?x4xf32>) -> tensor<?x8xf32> {
    %wg = tfm.get_weight @d.gate_proj.weight : tensor<8x4xf32>
    %wu = tfm.get_weight @d.up_proj.weight : tensor<8x4xf32>
    %g = tfm.linear %x, %wg : (tensor<?x4xf32>, tensor<8x4xf32>) -> tensor<?x8xf32>
    %u = tfm.linear %y, %wu : (tensor<?x4xf32>, tensor<8x4xf32>) -> tensor<?x8xf32>
    %s = tfm.swiglu %g, %u : tensor<?x8xf32>
    return %s : tensor<?x8xf32>
  }
}
