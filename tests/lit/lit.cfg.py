# lit configuration: .kir files under tests/lit, run through kiln's tools and FileCheck.
import os
import lit.formats

config.name = "kiln"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".kir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.kiln_bin_dir, "..", "tests", "lit-out")
config.excludes = ["Inputs"]

config.substitutions.append(("%examples", os.path.join(config.kiln_src_dir, "examples")))
config.substitutions.append(("FileCheck", config.filecheck))
config.substitutions.append(("not ", os.path.join(os.path.dirname(config.filecheck), "not") + " "))
config.environment["PATH"] = os.pathsep.join([config.kiln_bin_dir, config.environment.get("PATH", "")])
