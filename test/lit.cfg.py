# -*- Python -*-
import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "OptMLIR"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py",
                   "unit", "fuzz", "data"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.optmlir_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%python", config.python_executable or "python3"))
config.substitutions.append(("%repo", config.optmlir_source_dir))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Import", "Inputs")))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.optmlir_tools_dir, append_path=True)

tools = ["optmlir-opt", "optc", "optrun", "optpkg-testgen"]
llvm_config.add_tool_substitutions(tools, [config.optmlir_tools_dir])

# Tests on the main reference model need ../shared/models; a user's clone may
# not have it, and those tests then report UNSUPPORTED instead of failing.
if os.path.isfile(os.path.join(config.shared_models_dir, "main", "config.json")):
    config.available_features.add("shared-models")
    config.substitutions.append(("%shared_models", config.shared_models_dir))
