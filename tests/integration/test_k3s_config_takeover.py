"""A K3s config.yaml written by hand, on a simulated host: the plan names the keys a rewrite
would drop (never a value: the file holds a token), provision refuses without --yes and leaves
the file as it was, and keeping the keys under cluster.k3s_extra_config makes it a plain update."""
import secrets

import pytest

from test_provision import module_site

pytestmark = pytest.mark.integration

TOKEN = "gpuhub-canary-" + secrets.token_hex(12)
HAND_WRITTEN = f"""# written by hand, following the guide
token: "{TOKEN}"
cluster-cidr: 10.52.0.0/16
kubelet-arg+:
  - max-pods=150
disable: traefik
"""


@pytest.fixture(scope="module")
def site(testhosts, tmp_path_factory):
    yield from module_site(testhosts, tmp_path_factory, "k3s-config")


def test_a_hand_written_config_is_not_rewritten_without_yes(site, testhosts):
    testhosts.put("gpu1", HAND_WRITTEN.encode(), "/etc/rancher/k3s/config.yaml", 0o600)
    before = site.sh("gpu1", "sha256sum /etc/rancher/k3s/config.yaml").stdout

    result = site.fab("plan", "--json", hosts=("gpu1",))
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    plan = site.plan(hosts=("gpu1",))
    step = plan["gpu1"]["k3s.install"]
    assert step["destructive"] is True
    assert "DROPS keys the file on the host sets: cluster-cidr, kubelet-arg" in step["summary"]

    refused = site.fab("provision", hosts=("gpu1",))
    assert refused.returncode == 1 and "destructive changes need --yes" in refused.stderr, refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr
    assert site.sh("gpu1", "sha256sum /etc/rancher/k3s/config.yaml").stdout == before

    kept = site.write_inventory(cluster__k3s_extra_config={"cluster-cidr": "10.52.0.0/16",
                                                           "kubelet-arg": ["max-pods=150"]})
    step = site.plan(kept, hosts=("gpu1",))["gpu1"]["k3s.install"]
    assert step["destructive"] is False and "with cluster.k3s_extra_config keys: cluster-cidr, kubelet-arg" \
        in step["summary"]
