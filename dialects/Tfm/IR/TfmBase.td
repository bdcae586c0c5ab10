//===- TfmBase.td - The tfm dialect definition -------------*- tablegen -*-===//
//
// The tfm dialect: transformer graphs at the level a model author thinks in.
//
//===----------------------------------------------------------------------===//

#ifndef TFM_BASE
#define TFM_BASE

include "mlir/IR/OpBase.td"

def Tfm_Dialect : Dialect {
  let name = "tfm";
  let cppNamespace = "::mlir::tfm";
  let summary = "Transformer graphs over ranked tensors";
  let description = [{
    High-level transformer operations (embedding, RMS normalisation, linear
    layers, rotary embedding, attention, SwiGLU) and the primitives that a
    decomposed graph needs (matmul, softmax, elementwise arithmetic, reshape,
    transpose, repeat, split). Values are ranked tensors with value semantics;
    activations are laid out token-major (`[tokens, ...]`), so a ragged batch
    of sequences is one packed token dimension.

    Weights never appear as constants: a module declares each weight once as a
    `tfm.weight` symbol that names a tensor in the weight store, and functions
    read it with `tfm.get_weight`.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

class Tfm_Op<string mnemonic, list<Trait> traits = []>
    : Op<Tfm_Dialect, mnemonic, traits>;

#endif // TFM_BASE
