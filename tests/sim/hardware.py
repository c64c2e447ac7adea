"""SIMULATION (tests only): give a test host its GPU hardware, the one thing gpuhub expects to
find and never installs: the NVIDIA driver's CLI (tests/sim/nvidia-smi) and the PCI bus that
shows the GPUs with or without a driver (tests/sim/pci-view)."""

PCI_VIEW = "/etc/gpuhub-sim/pci-view"


def give_gpus(hosts, host: str, paths: dict, count: int) -> None:
    """`paths` from build_bundle(); `hosts` the SshTestHosts handle."""
    hosts.put(host, paths["nvidia_smi"], "/usr/bin/nvidia-smi", 0o755)
    hosts.put(host, str(count).encode(), "/etc/gpuhub-sim/gpus", 0o644)
    hosts.put(host, paths["pci_view"], PCI_VIEW, 0o755)
    hosts.run(host, PCI_VIEW)


def refresh_pci(hosts, host: str) -> None:
    """After changing the `gpus` setting or the `pci-gpus` fault: lay the bus out again."""
    hosts.run(host, PCI_VIEW)
