"""Secrets appear nowhere but where they must: masked when shown, refused in command lines."""
import json

import pytest

from gpuhub import facts
from gpuhub.secret import Secret, SecretInCommand, digest, mask
from gpuhub.target import StepFailed, Target


class Recorder:
    """A runner that records what would be sent to the host."""

    def __init__(self):
        self.commands, self.stdin = [], []

    def run(self, command, **kwargs):
        self.commands.append(command)
        stream = kwargs.get("in_stream")
        self.stdin.append(stream.read() if stream else None)
        from invoke.runners import Result
        return Result(stdout="0\n" if command == "id -u" else "", exited=0)


def remote(recorder):
    return Target("gpu1", recorder, remote=True)


def test_a_secret_is_shown_as_stars_everywhere():
    secret = Secret("canary-0123456789abcdef")
    assert f"{secret} {secret!r} {secret:>10}" == "*** *** ***"
    assert mask("helm said: canary-0123456789abcdef is wrong") == "helm said: *** is wrong"


def test_a_secret_never_goes_into_a_command_line():
    secret = Secret("canary-fedcba9876543210")
    recorder = Recorder()
    target = remote(recorder)
    with pytest.raises(SecretInCommand):
        target.check("/var/lib/gpuhub/scripts/x.sh", "step", env={"TOKEN": secret})
    with pytest.raises(SecretInCommand):  # revealed and pasted into a command: refused all the same
        target.run(f"echo {secret.reveal()}")
    assert not any("canary-fedcba9876543210" in c for c in recorder.commands)


def test_stdin_carries_a_secret_the_command_line_does_not():
    secret = Secret("canary-aaaabbbbccccdddd")
    recorder = Recorder()
    remote(recorder).check("/var/lib/gpuhub/scripts/helm-release.sh", "hub.launch",
                           env={"VALUES_BYTES": "30"}, stdin=f'{{"s": "{secret.reveal()}"}}')
    assert "canary-aaaabbbbccccdddd" in recorder.stdin[-1]
    assert not any("canary-aaaabbbbccccdddd" in c for c in recorder.commands)


def test_a_failed_step_masks_what_it_echoes():
    Secret("canary-1111222233334444")
    from gpuhub.target import Result
    failed = StepFailed("gpu1", "hub.launch", "helm-release.sh",
                        Result("", "Error: bad value canary-1111222233334444", 1))
    assert "canary-1111222233334444" not in str(failed) and "***" in str(failed)


def test_facts_keep_a_digest_of_the_oauth_secret_not_the_secret():
    """helm's record of the hub release holds the values, secret included: the facts keep its digest."""
    import base64
    import gzip
    release = {"name": "jhub", "version": 1, "info": {"status": "deployed"},
               "config": {"hub": {"config": {"GitHubOAuthenticator": {"client_secret": "canary-5555666677778888"}}}}}
    stored = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    out = json.dumps({"kind": "List", "items": [{"kind": "Secret", "type": "helm.sh/release.v1",
                                                 "metadata": {"name": "sh.helm.release.v1.jhub.v1", "namespace": "jhub"},
                                                 "data": {"release": base64.b64encode(stored).decode()}}]})
    values = facts.parse_helm_releases(out, 0, {"hub": "jhub/jhub"})["hub_values"]
    assert values["hub"]["config"]["GitHubOAuthenticator"]["client_secret"] == digest("canary-5555666677778888")
    assert "canary-5555666677778888" not in json.dumps(values)
