//===- TfmTypes.td - tfm types -----------------------------*- tablegen -*-===//

#ifndef TFM_TYPES
#define TFM_TYPES

include "dialects/Tfm/IR/TfmBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/BuiltinTypeInterfaces.td"

def Tfm_KVCacheType : TypeDef<Tfm_Dialect, "KVCache"> {
  let mnemonic = "kv_cache";
  let summary = "A paged key/value cache for every layer of a model";
  let description = [{
    The cache holds keys and values of `layers` layers, `kv_heads` heads of
    `head_dim` elements each, in blocks of `block_size` tokens, stored as
    `element_type`. It is a typed value so that layout and quantisation passes
    can change it and the runtime can read its layout from the artifact.

    ```mlir
    !tfm.kv_cache<layers = 6, kv_heads = 2, head_dim = 64, block_size = 16,
                  element_type = bf16>
    ```
  }];
  let parameters = (ins
    "int64_t":$layers,
    "int64_t":$kv_heads,
    "int64_t":$head_dim,
    "int64_t":$block_size,
    "::mlir::Type":$element_type
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // TFM_TYPES
