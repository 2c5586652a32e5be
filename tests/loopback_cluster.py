"""TF_CONFIG values for multi-worker tests on this machine."""

import json
import socket


def worker_tf_configs(workers):
    """One TF_CONFIG (a JSON string) per worker of a cluster of `workers`
    processes on free loopback ports; index 0 is the chief."""
    ports = []
    for _ in range(workers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster,
                        "task": {"type": "worker", "index": index}})
            for index in range(workers)]
