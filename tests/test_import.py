import subprocess
import sys


def test_import_is_cheap():
    code = (
        "import sys, secateurs\n"
        "heavy = [m for m in ('torchvision', 'transformers', 'timm', 'secateurs.graph.capture') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
