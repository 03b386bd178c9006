"""os_image and vm_cluster input handling, without booting a VM.

The URL path is exercised with a local file:// URL (no internet here): a verified download is
converted and cached (a second run changes nothing), a missing or wrong checksum is refused
with a message naming the variable and the fix, and nothing unverified is left in the cache.
The NoCloud seed is read back from the ISO. vm_cluster refuses bad VM addresses before it
creates anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root


@pytest.fixture(scope="module", autouse=True)
def image_tools() -> None:
    """qemu-img and isoinfo, as the role itself installs them (a fresh host has neither)."""
    if shutil.which("qemu-img") is None or shutil.which("isoinfo") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "qemu-utils", "genisoimage"],
            check=True,
            capture_output=True,
            timeout=600,
        )


def run_role(tmp_path: Path, role: str, extra: dict[str, object]) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        f"- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles: [{role}]\n"
    )
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [
            str(REPO / ".venv/bin/ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={REPO / '.venv/bin/python'}",
            "-e",
            f"@{extra_file}",
            str(playbook),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    """A small qcow2 'cloud image' and its sha256."""
    path = tmp_path / "cloud.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def base_vars(tmp_path: Path) -> dict[str, object]:
    return {
        "os_image_cache_dir": str(tmp_path / "cache"),
        "os_image_ssh_key": str(tmp_path / "ssh" / "id_ed25519"),
    }


def test_url_with_checksum_is_downloaded_converted_and_cached(
    tmp_path: Path, image: tuple[Path, str]
) -> None:
    path, digest = image
    extra = {
        **base_vars(tmp_path),
        "os_image_source": "url",
        "os_image_url": f"file://{path}",
        "os_image_checksum": f"sha256:{digest}",
        "os_image_seed_hostname": "kmvm-9",
        "os_image_seed_address": "10.250.0.19/24",
    }
    first = run_role(tmp_path, "os_image", extra)
    assert first.returncode == 0, first.stdout[-3000:]
    disks = list((tmp_path / "cache").glob("cloud-*.qcow2"))
    assert len(disks) == 1
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(disks[0])],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 16 * 1024 * 1024

    # The seed of a cloud image: volume 'cidata', the lab's key, the static address.
    iso = tmp_path / "cache" / "seed-kmvm-9" / "seed.iso"
    volume = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True)
    assert "Volume id: cidata" in volume.stdout
    user_data = subprocess.run(
        ["isoinfo", "-J", "-i", str(iso), "-x", "/user-data"], capture_output=True, text=True
    ).stdout
    pubkey = (tmp_path / "ssh" / "id_ed25519.pub").read_text().strip()
    assert user_data.startswith("#cloud-config")
    assert pubkey in user_data
    network = subprocess.run(
        ["isoinfo", "-J", "-i", str(iso), "-x", "/network-config"], capture_output=True, text=True
    ).stdout
    assert "10.250.0.19/24" in network

    second = run_role(tmp_path, "os_image", extra)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "changed=0" in second.stdout, second.stdout[-3000:]


def test_url_without_checksum_is_refused(tmp_path: Path, image: tuple[Path, str]) -> None:
    path, _ = image
    extra = {**base_vars(tmp_path), "os_image_source": "url", "os_image_url": f"file://{path}"}
    proc = run_role(tmp_path, "os_image", extra)
    assert proc.returncode != 0
    assert "os_image_checksum" in proc.stdout
    assert "SHA256SUMS" in proc.stdout
    assert not (tmp_path / "cache").exists()


def test_url_with_wrong_checksum_is_refused(tmp_path: Path, image: tuple[Path, str]) -> None:
    path, _ = image
    extra = {
        **base_vars(tmp_path),
        "os_image_source": "url",
        "os_image_url": f"file://{path}",
        "os_image_checksum": "sha256:" + "0" * 64,
    }
    proc = run_role(tmp_path, "os_image", extra)
    assert proc.returncode != 0
    assert "Could not get a verified image" in proc.stdout
    # Nothing unverified stays where a later run would take it for a good download.
    assert not list((tmp_path / "cache").glob("download-*"))
    assert not list((tmp_path / "cache").glob("cloud-*"))


def test_malformed_checksum_is_refused(tmp_path: Path, image: tuple[Path, str]) -> None:
    path, digest = image
    extra = {
        **base_vars(tmp_path),
        "os_image_source": "url",
        "os_image_url": f"file://{path}",
        "os_image_checksum": digest,  # no ALGO: prefix
    }
    proc = run_role(tmp_path, "os_image", extra)
    assert proc.returncode != 0
    assert "is not ALGO:HEX" in proc.stdout


def test_local_file_with_wrong_checksum_is_refused(tmp_path: Path, image: tuple[Path, str]) -> None:
    path, _ = image
    extra = {
        **base_vars(tmp_path),
        "os_image_source": "file",
        "os_image_file": str(path),
        "os_image_checksum": "sha256:" + "1" * 64,
    }
    proc = run_role(tmp_path, "os_image", extra)
    assert proc.returncode != 0
    assert "is not the expected image" in proc.stdout


def test_vm_cluster_refuses_an_address_outside_the_bridge_subnet(tmp_path: Path) -> None:
    extra = {
        "vm_cluster_nodes": [{"name": "kmvm-1", "ip": "192.168.7.5"}],
        "vm_cluster_netns": "kmvmtest-net",
        "vm_cluster_state_dir": str(tmp_path / "vms"),
        "vm_cluster_disk": str(tmp_path / "none.qcow2"),
        "vm_cluster_kernel": "k",
        "vm_cluster_initrd": "i",
    }
    proc = run_role(tmp_path, "vm_cluster", extra)
    assert proc.returncode != 0
    assert "192.168.7.5 is not a free host address of 10.250.0.0/24" in proc.stdout
    assert not Path("/run/netns/kmvmtest-net").exists()
    assert not (tmp_path / "vms").exists()
