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
# The pipeline cache of Vulkan runs stays inside the build.
config.environment["KILN_CACHE_DIR"] = os.path.join(config.kiln_bin_dir, "..", "test-cache")
# Every Vulkan run under the validation layer, as in the unit tests.
config.environment["KILN_VK_VALIDATE"] = "1"

# Features: tools and devices a test may require; without them it is UNSUPPORTED (skipped).
import shutil
if shutil.which("spirv-val"):
    config.available_features.add("spirv-val")
if os.path.exists(os.path.join(config.kiln_bin_dir, "kiln-run")):
    import subprocess
    probe = subprocess.run([os.path.join(config.kiln_bin_dir, "kiln-run"), "--list-devices"],
                           capture_output=True, text=True)
    if probe.returncode == 0 and "vulkan:" in probe.stdout:
        config.available_features.add("vulkan")
    elif os.environ.get("KILN_REQUIRE_VULKAN") == "1":
        lit_config.fatal("KILN_REQUIRE_VULKAN=1 but kiln-run found no Vulkan device: " +
                         probe.stdout + probe.stderr)
