// RUN: optmlir-opt %s -tfm-fuse-qkv -split-input-file | FileCheck %s

// Query, key and value projections through reshape and rope become one
// linear over a lazily concatenated weight, then a split.
// CHECK: tfm.weight @l.self_attn.q_proj.weight : tensor<384x384xbf16>
// CHECK-NEXT: tfm.weight @l.self_attn.k_proj.weight : tensor<128x384xbf16>
// CHECK-NEXT: tfm.weight @l.self_attn.v_proj.weight : tensor<128x384xbf16>
// CHECK-NEXT: tfm.weight @l.self_attn.qkv_proj.weight : tensor<640x384xbf16> = concat [@l.self_attn.q_proj.weight, @l.self_attn.k_proj.weight, @l.self_attn.v_proj.weight] dim 0
// CHECK-LABEL: func.func @gqa
// CHECK-SAME: (%[[X:.*]]: tensor<?x384xbf16>, %[[POS:.*]]: tensor<?xi32>)
// CHECK: %[[W:.*]] = tfm.get_weight @l.self_attn.qkv_proj.weight : tensor<640x384xbf16>
// CHECK-NEXT: %[[Y:.*]] = tfm.linear %[[X]], %[[W]] : (tensor<?x384xbf16>, tensor<640x384xbf16>) -> tensor<?x640xbf16>
// CHECK-NEXT: %[[S:.*]]:3 = tfm.split %[[Y]] dim 1 : tensor<?x640xbf16> -> tensor<?x384xbf16>, tensor<?x128xbf16>, tensor<?x128xbf16>
// CHECK-NOT: tfm.linear
// CHECK-NOT: tfm.get_weight
// CHECK: tfm.reshape %[[S]]#0
// CHECK: tfm.reshape %[[S]]#1
// CHECK: tfm.reshape %[[S]]#2
module {
  tfm.weight @l.self_attn.q_proj.weight : tensor<384x384xbf16>
  tfm.weight @l.self_attn.k_proj.weight : tensor<128x384xbf16>
  tfm.weight @l.self_attn.v_proj.weight : tensor<128x384xbf16>
  func.func @gqa(%x: tensor<?x384xbf16>, %pos: tensor<?xi32>) -> tensor<?x6x64xbf16> {
    %wq = tfm.get_weight @l.self_attn.q_proj.weight : tensor<384x384xbf16>
    %q = tfm.linear %x, %wq : (tensor<?x384xbf16>, tensor<384x384xbf16>) -> tensor<?x384xbf16>
    %wk = tfm.get_weight @l.self_attn.k_proj.weight : tensor<128x384xbf16>
    %k = tfm.linear %x, %wk : (tensor<?x384xbf16>, tensor<128x384xbf16>) -> tensor<?x128xbf16>
    %wv = tfm.get_weight @l.self_attn.v_proj.weight : tensor<128x384xbf16>
    %v = tfm.linear %x, %wv : (tensor<?x384xbf16>, tensor<128x384xbf16>) -> tensor<?x128xbf16>
    %q3 = tfm.reshape %q : tensor<?x384xbf16> -> tensor<?x6x64xbf16>
    %k3 = tfm.reshape %k : tensor<?x128xbf16> -> tensor<?x2x64xbf16>
    %v3 = tfm.reshape %v : tensor<?x128xbf16> -> tensor<?x2x64xbf16>
    %qr = tfm.rope %q3, %pos theta 1.000000e+04 : (tensor<?x6x64xbf16>, tensor<?xi32>) -> tensor<?x6x64xbf16>
    %kr = tfm.rope %k3, %pos theta 1.000000e+04 : (tensor<?x2x64xbf16>, tensor<?xi32>) -> tensor<?x2x64xbf16>
    %a = tfm.attention %qr, %kr, %v3 scale 1.250000e-01 causal : (tensor<?x6x64xbf16>, tensor<?x2x64xbf16>, tensor<?x2x64xbf16>) -> tensor<?x6x64xbf16>
    return %a : tensor<?x6x64xbf16>
  }
}

// -----

// Qwen2-style biases are concatenated too.
// CHECK: tfm.weight @m.qkv_proj.bias : tensor<12xf32> = concat [@m.q_proj.bias, @m.k_proj.bias, @m.v_proj.bias] dim 0
// CHECK-LABEL: func.func @biased
// CHECK: %[[W:.*]] = tfm.get_weight @m.qkv_proj.weight : tensor<12x8xf32>
// CHECK: %[[B:.*]] = tfm.get_weight @m.qkv_proj.bias : tensor<12xf32>
// CHECK: tfm.linear %{{.*}}, %[[W]] bias %[[B]] : (tensor<?x8xf32>, tensor<12x8xf32>, tensor<12xf32>) -> tensor<?x12xf32>
// CHECK: tfm.split
module {
  tfm.weight @m.q_proj.weight : tensor<8x8xf32>
  tfm.weight @m.k_proj.weight : tensor<2x8xf32>
  tfm.weight @m.v_proj.weight : tensor<2x8xf32>
  tfm.weight @m.q_proj.bias : tensor<8xf32>
  tfm.weight @m.k_proj.bias : tensor<2xf32>
  tfm.weight @m.v_proj.bias : tensor<2xf32>
  func.func @biased(%x: tensor<?x8xf32>) -> tensor<?x4x2xf32> {
    %wq = tfm.get_weight @m.q_proj.weight : tensor<8x8xf32>
    %bq = tfm.get_weight @m.q_proj.bias : tensor<8xf32>
    %wk = tfm.get_weight @m.k_proj.weight : tensor<2x8xf32>
    %bk = tfm.get_weight @m.k_proj.bias : tensor<2xf32>
    %wv = tfm.get_weight @m.v_proj.weight : tensor<2x8xf32>
    %bv = tfm.get_weight @m.v_proj.bias : tensor<2xf32>
    %q = tfm.linear %x, %wq bias %bq : (tensor<?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    %k = tfm.linear %x, %wk bias %bk : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32>) -> tensor<?x2xf32>
    %v = tfm.linear %x, %wv bias %bv : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32>) -> tensor<?x2xf32>
    %q3 = tfm.reshape %q : tensor<?x8xf32> -> tensor<?x4x2xf32>
    %k3 = tfm.reshape %k : tensor<?x2xf32> -> tensor<?x1x2xf32>
    %v3 = tfm.reshape %v : tensor<?x2xf32> -> tensor<?x1x2xf32>
    %a = tfm.attention %q3, %k3, %v3 scale 5.000000e-01 causal : (tensor<?x4x2xf32>, tensor<?x1x2xf32>, tensor<?x1x2xf32>) -> tensor<?x4x2xf32>
    return %a : tensor<?x4x2xf32>
  }
}

// -----

// A projection used elsewhere too, or linears of different inputs, stay.
// CHECK-LABEL: func.func @not_fusable
// CHECK-COUNT-3: tfm.linear
// CHECK-NOT: tfm.split
module {
  tfm.weight @n.q_proj.weight : tensor<8x8xf32>
  tfm.weight @n.k_proj.weight : tensor<8x8xf32>
  tfm.weight @n.v_proj.weight : tensor<8x8xf32>
  func.func @not_fusable(%x: tensor<?x8xf32>, %y: tensor<?x8xf32>) -> (tensor<?x4x2xf32>, tensor<?x8xf32>) {
    %wq = tfm.get_weight @n.q_proj.weight : tensor<8x8xf32>
    %wk = tfm.get_weight @n.k_proj.weight : tensor<8x8xf32>
    %wv = tfm.get_weight @n.v_proj.weight : tensor<8x8xf32>
    %q = tfm.linear %x, %wq : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
    %k = tfm.linear %y, %wk : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
    %v = tfm.linear %x, %wv : (tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
    %q3 = tfm.reshape %q : tensor<?x8xf32> -> tensor<?x4x2xf32>
    %k3 = tfm.reshape %k : tensor<?x8xf32> -> tensor<?x4x2xf32>
    %v3 = tfm.reshape %v : tensor<?x8xf32> -> tensor<?x4x2xf32>
    %a = tfm.attention %q3, %k3, %v3 scale 5.000000e-01 causal : (tensor<?x4x2xf32>, tensor<?x4x2xf32>, tensor<?x4x2xf32>) -> tensor<?x4x2xf32>
    return %a, %q : tensor<?x4x2xf32>, tensor<?x8xf32>
  }
}

// -----

// A name already taken gets a unique one.
// CHECK: tfm.weight @o.qkv_proj.weight : tensor<1xf32>
// CHECK: tfm.weight @[[FUSED:o.qkv_proj.weight_[0-9]+]] : tensor<6x2xf32> = concat
// CHECK-LABEL: func.func @name_taken
// CHECK: tfm.get_weight @[[FUSED]]
module {
  tfm.weight @o.qkv_proj.weight : tensor<1xf32>
  tfm.weight @o.q_proj.weight : tensor<2x2xf32>
  tfm.weight @o.k_proj.weight : tensor<2x2xf32>
  tfm.weight @o.v_proj.weight : tensor<2x2xf32>
  func.func @name_taken(%x: tensor<3x2xf32>) -> tensor<3x1x2xf32> {
    %wq = tfm.get_weight @o.q_proj.weight : tensor<2x2xf32>
    %wk = tfm.get_weight @o.k_proj.weight : tensor<2x2xf32>
    %wv = tfm.get_weight @o.v_proj.weight : tensor<2x2xf32>
    %q = tfm.linear %x, %wq : (tensor<3x2xf32>, tensor<2x2xf32>) -> tensor<3x2xf32>
    %k = tfm.linear %x, %wk : (tensor<3x2xf32>, tensor<2x2xf32>) -> tensor<3x2xf32>
    %v = tfm.linear %x, %wv : (tensor<3x2xf32>, tensor<2x2xf32>) -> tensor<3x2xf32>
    %q3 = tfm.reshape %q : tensor<3x2xf32> -> tensor<3x1x2xf32>
    %k3 = tfm.reshape %k : tensor<3x2xf32> -> tensor<3x1x2xf32>
    %v3 = tfm.reshape %v : tensor<3x2xf32> -> tensor<3x1x2xf32>
    %a = tfm.attention %q3, %k3, %v3 scale 5.000000e-01 causal : (tensor<3x1x2xf32>, tensor<3x1x2xf32>, tensor<3x1x2xf32>) -> tensor<3x1x2xf32>
    return %a : tensor<3x1x2xf32>
  }
}
