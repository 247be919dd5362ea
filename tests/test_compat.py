"""The torchvision shim: timm imports on this CPU torch, and only via the shim."""

import subprocess
import sys

import torch

from vis4mer.compat import import_timm


def test_import_timm_returns_the_module_and_is_idempotent():
    timm = import_timm()
    assert import_timm() is timm
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32)
    assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 5, 192)


def test_torchvision_transforms_work_after_the_shim():
    import_timm()
    from torchvision.transforms import Normalize

    out = Normalize(mean=[0.5] * 3, std=[0.5] * 3)(torch.ones(3, 2, 2))
    assert torch.allclose(out, torch.ones(3, 2, 2))


def test_fresh_interpreter_needs_the_shim_only_on_cpu_torch():
    """In a fresh process: a plain `import torchvision` fails on CPU torch with the
    missing-operator error, and import_timm() then works (twice)."""
    script = (
        "import torch\n"
        "try:\n"
        "    import torchvision\n"
        "    plain = 'ok'\n"
        "except RuntimeError as error:\n"
        "    plain = str(error)\n"
        "    import sys\n"
        "    for name in [m for m in sys.modules if m.startswith('torchvision')]: del sys.modules[name]\n"
        "from vis4mer.compat import import_timm\n"
        "assert import_timm() is import_timm()\n"
        "print(plain)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if torch.version.cuda is None:
        assert "torchvision::nms does not exist" in result.stdout
    else:
        assert result.stdout.strip() == "ok"
