"""Airgap files per architecture: each listed under the architecture it is built for, and each
host given those of its own (its `arch` fact); a host whose architecture lacks one the others
have is blocked, naming the key to add."""
import pytest

from gpuhub.steps import WORK_DIR, k3s, runtime
from test_airgap_files import elf, problems
from test_plan import bare, ctx_for

X86, ARM = 62, 183  # ELF e_machine: EM_X86_64, EM_AARCH64

TWO_HOSTS = {"hosts": {"gpu1": {"role": "server", "gpus": 1}, "spark": {"role": "agent", "gpus": 1}}}


def files(tmp_path):
    (tmp_path / "install.sh").write_text("#!/bin/sh\nexit 0\n")
    elf(tmp_path / "k3s", X86)
    elf(tmp_path / "k3s-arm64", ARM)
    elf(tmp_path / "helm-amd64", X86)
    elf(tmp_path / "helm-arm64", ARM)


def load_two(tmp_path, airgap):
    import json
    import yaml
    from gpuhub import inventory
    from test_airgap_files import BASE
    data = json.loads(json.dumps(BASE))
    data["hosts"] = TWO_HOSTS["hosts"]
    data["airgap"] = airgap
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(data))
    return inventory.load(str(tmp_path / "hosts.yaml"))


BOTH = {"k3s_install_script": "install.sh",
        "amd64": {"k3s_binary": "k3s", "helm_binary": "helm-amd64"},
        "arm64": {"k3s_binary": "k3s-arm64", "helm_binary": "helm-arm64"}}


class TestInventory:
    def test_each_host_gets_the_files_of_its_architecture(self, tmp_path):
        files(tmp_path)
        inv = load_two(tmp_path, BOTH)
        assert inv.airgap_file("k3s_binary", "x86_64") == tmp_path / "k3s"
        assert inv.airgap_file("k3s_binary", "aarch64") == tmp_path / "k3s-arm64"
        assert inv.airgap_file("helm_binary", "aarch64") == tmp_path / "helm-arm64"
        assert inv.airgap_file("k3s_install_script", "aarch64") == tmp_path / "install.sh"  # neutral: for all
        assert inv.airgap_file("k3s_binary", "riscv64") is None

    def test_the_flat_form_still_serves_every_host(self, tmp_path):
        files(tmp_path)
        inv = load_two(tmp_path, {"k3s_install_script": "install.sh", "k3s_binary": "k3s"})
        assert inv.airgap_by_arch == []
        assert inv.airgap_file("k3s_binary", "x86_64") == inv.airgap_file("k3s_binary") == tmp_path / "k3s"

    def test_a_file_under_the_other_architecture_is_refused(self, tmp_path):
        files(tmp_path)
        message = problems(tmp_path, {"k3s_install_script": "install.sh", "arm64": {"k3s_binary": "k3s"}})
        assert f"airgap.arm64.k3s_binary: {tmp_path / 'k3s'} is for x86_64, not arm64 (aarch64)" in message

    def test_the_binary_under_an_architecture_still_needs_the_install_script(self, tmp_path):
        files(tmp_path)
        message = problems(tmp_path, {"arm64": {"k3s_binary": "k3s-arm64"}})
        assert "airgap: k3s_binary and k3s_install_script go together" in message

    def test_flat_and_per_architecture_forms_do_not_mix(self, tmp_path):
        files(tmp_path)
        message = problems(tmp_path, {**BOTH, "helm_binary": "helm-amd64"})
        assert "airgap.helm_binary: is given for every host, and airgap.amd64 lists files per architecture" \
            in message


class TestPlan:
    def install(self, inv, name, machine):
        return k3s.plan_install(ctx_for(inv, name, bare(arch=machine), server_facts=bare(arch="x86_64")))

    @staticmethod
    def uploaded(plan):
        return {a.what: a.local for c in plan.changes for a in c.actions if a.kind == "upload" and a.local}

    def test_each_host_uploads_its_own_architectures_files(self, tmp_path):
        files(tmp_path)
        inv = load_two(tmp_path, BOTH)
        server, agent = self.install(inv, "gpu1", "x86_64"), self.install(inv, "spark", "aarch64")
        assert self.uploaded(server)[f"{WORK_DIR}/k3s"] == tmp_path / "k3s"
        assert self.uploaded(server)[f"{WORK_DIR}/helm"] == tmp_path / "helm-amd64"
        assert self.uploaded(agent)[f"{WORK_DIR}/k3s"] == tmp_path / "k3s-arm64"
        assert f"{WORK_DIR}/helm" not in self.uploaded(agent)  # helm runs on the server only
        assert any(c.summary.endswith("(airgap)") for c in agent.changes)

    def test_a_host_whose_architecture_has_no_files_is_blocked_naming_the_key(self, tmp_path):
        files(tmp_path)
        inv = load_two(tmp_path, {"k3s_install_script": "install.sh", "amd64": {"k3s_binary": "k3s"}})
        assert self.install(inv, "gpu1", "x86_64").status == "change"
        agent = self.install(inv, "spark", "aarch64")
        assert agent.status == "blocked"
        assert agent.reason.startswith("airgap.arm64.k3s_binary is not given, and airgap.amd64.k3s_binary is: "
                                       "this aarch64 host would download")

    def test_a_host_of_an_unread_or_unlisted_architecture_is_blocked_too(self, tmp_path):
        files(tmp_path)
        inv = load_two(tmp_path, {"k3s_install_script": "install.sh", "amd64": {"k3s_binary": "k3s"}})
        assert "architecture (uname -m) was not read" in self.install(inv, "spark", None).reason
        assert "this host is riscv64, and airgap lists files only for amd64, arm64" \
            in self.install(inv, "spark", "riscv64").reason
        flat = load_two(tmp_path, {"k3s_install_script": "install.sh", "k3s_binary": "k3s"})
        assert flat.airgap_missing("k3s_binary", None) == ""  # one set for all: nothing to choose

    def test_the_toolkit_of_a_host_without_its_architectures_packages_is_blocked(self, tmp_path):
        inv = load_two(tmp_path, {})
        inv.airgap["amd64"]["toolkit_packages"] = ["a.deb"]  # the files' checks are test_toolkit_packages'
        inv.airgap_by_arch = ["amd64"]
        p = runtime.plan_runtime(ctx_for(inv, "spark", bare(arch="aarch64")))
        assert p.status == "blocked" and "airgap.arm64.toolkit_packages is not given" in p.reason
        ok = runtime.plan_runtime(ctx_for(inv, "gpu1", bare(arch="x86_64")))
        assert [a.local.name for c in ok.changes for a in c.actions if a.kind == "upload"] == ["a.deb"]


@pytest.mark.parametrize("machine, arch", [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_architecture_names_follow_k3s_and_helm(machine, arch):
    from gpuhub.inventory import AIRGAP_ARCHES
    assert AIRGAP_ARCHES[arch] == machine
