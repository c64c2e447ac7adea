"""The floor for a run over SSH: a fresh Python process opens one Fabric connection per host
(all at once) and runs `true` on each. Nothing gpuhub does can cost less than this.

    python benchmarks/floor.py SSH_CONFIG HOST [HOST...]
"""
import sys
from concurrent.futures import ThreadPoolExecutor

from fabric import Config, Connection


def touch(name: str, ssh_config: str) -> None:
    with Connection(name, config=Config(runtime_ssh_path=ssh_config)) as conn:
        conn.run("true", hide=True, in_stream=False)


if __name__ == "__main__":
    ssh_config, hosts = sys.argv[1], sys.argv[2:]
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda name: touch(name, ssh_config), hosts))
