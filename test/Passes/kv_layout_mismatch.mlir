// RUN: optmlir-opt %s -tfm-kv-layout -verify-diagnostics

// One paged cache cannot hold keys of two shapes.
func.func @mismatched(%q: tensor<?x4x64xf32>, %k: tensor<?x2x64xf32>, %v: tensor<?x2x64xf32>, %k2: tensor<?x4x64xf32>) -> tensor<?x4x64xf32> {
  %a = tfm.attention %q, %k, %v scale 1.250000e-01 causal : (tensor<?x4x64xf32>, tensor<?x2x64xf32>, tensor<?x2x64xf32>) -> tensor<?x4x64xf32>
  // expected-error @+1 {{'tfm.attention' op has keys of type 'tensor<?x4x64xf32>', the first attention 'tensor<?x2x64xf32>': one paged KV cache cannot serve both}}
  %b = tfm.attention %a, %k2, %k2 scale 1.250000e-01 causal : (tensor<?x4x64xf32>, tensor<?x4x64xf32>, tensor<?x4x64xf32>) -> tensor<?x4x64xf32>
  return %b : tensor<?x4x64xf32>
}
