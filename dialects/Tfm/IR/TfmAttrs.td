//===- TfmAttrs.td - tfm attributes and enums --------------*- tablegen -*-===//

#ifndef TFM_ATTRS
#define TFM_ATTRS

include "dialects/Tfm/IR/TfmBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Tfm_RopeScalingKind : I32EnumAttr<"RopeScalingKind",
    "how RoPE frequencies are rescaled for longer contexts", [
      I32EnumAttrCase<"Linear", 0, "linear">,
      I32EnumAttrCase<"Llama3", 1, "llama3">
    ]> {
  let cppNamespace = "::mlir::tfm";
  let genSpecializedAttr = 0;
}

def Tfm_ActivationQuant : I32EnumAttr<"ActivationQuant",
    "how a quantized linear quantizes its input rows before the product", [
      I32EnumAttrCase<"None", 0, "none">,
      I32EnumAttrCase<"Int8PerToken", 1, "int8_per_token">,
      I32EnumAttrCase<"F8Dynamic", 2, "fp8_dynamic">,
      I32EnumAttrCase<"F8Static", 3, "fp8_static">
    ]> {
  let cppNamespace = "::mlir::tfm";
  let genSpecializedAttr = 0;
}
def Tfm_ActivationQuantAttr
    : EnumAttr<Tfm_Dialect, Tfm_ActivationQuant, "activation_quant">;

/// An f64 parameter printed and parsed as a plain float literal.
class Tfm_F64Parameter<string desc, string default = "">
    : AttrOrTypeParameter<"::llvm::APFloat", desc> {
  let parser = [{ [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
    double value;
    if (::mlir::failed($_parser.parseFloat(value)))
      return ::mlir::failure();
    return ::llvm::APFloat(value);
  }() }];
  let printer = [{ $_printer.printFloat($_self) }];
  let comparator = [{ $_lhs.bitwiseIsEqual($_rhs) }];
  let defaultValue = default;
}

def Tfm_RopeScalingAttr : AttrDef<Tfm_Dialect, "RopeScaling"> {
  let mnemonic = "rope_scaling";
  let summary = "RoPE frequency scaling as Hugging Face defines it";
  let description = [{
    `linear`: every inverse frequency is divided by `factor` (position
    interpolation). `llama3`: wavelengths longer than
    `original_max_position_embeddings / low_freq_factor` are divided by
    `factor`, those shorter than `original_max_position_embeddings /
    high_freq_factor` are kept, and the band between is interpolated smoothly.

    ```mlir
    #tfm.rope_scaling<llama3, factor = 32.0, low_freq_factor = 1.0,
                      high_freq_factor = 4.0,
                      original_max_position_embeddings = 8192>
    ```
  }];
  let parameters = (ins
    EnumParameter<Tfm_RopeScalingKind>:$kind,
    Tfm_F64Parameter<"frequency divisor">:$factor,
    Tfm_F64Parameter<"llama3 low frequency factor",
                     "::llvm::APFloat(1.0)">:$low_freq_factor,
    Tfm_F64Parameter<"llama3 high frequency factor",
                     "::llvm::APFloat(4.0)">:$high_freq_factor,
    DefaultValuedParameter<"int64_t", "0">:$original_max_position_embeddings
  );
  let assemblyFormat = [{
    `<` $kind `,` struct($factor, $low_freq_factor, $high_freq_factor,
                         $original_max_position_embeddings) `>`
  }];
  let genVerifyDecl = 1;
}

#endif // TFM_ATTRS
