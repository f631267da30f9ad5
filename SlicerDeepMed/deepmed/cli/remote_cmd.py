"""``deepmed remote``: run a deepmed command on another machine over ssh (docs/remote.md).

    deepmed remote check --host gpu-server
    deepmed remote run --host gpu-server --python "conda run -n deepmed python" -- train --dataset d.json --out m
    deepmed remote attach ~/.deepmed/remote-jobs/JOB.json      # after a dropped connection
    deepmed remote stop JOB_FILE   |   deepmed remote cancel JOB_FILE

``deepmed remote worker ...`` is the remote side, started over ssh by the commands above.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepmed.errors import DeepMedError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("remote", help="run a deepmed command on a remote machine over ssh")
    commands = parser.add_subparsers(dest="remote_command", metavar="ACTION")
    commands.required = True
    hosts = argparse.ArgumentParser(add_help=False)
    hosts.add_argument("--host", required=True, help="host name or ~/.ssh/config alias")
    hosts.add_argument("--user", default="", help="remote user (default: ssh's)")
    hosts.add_argument("--port", type=int, default=0, help="ssh port (default: ssh's)")
    hosts.add_argument("--python", default="python3", help="remote command starting Python with deepmed")
    hosts.add_argument("--workdir", default="~/deepmed-remote", help="remote folder for the jobs' files")
    hosts.add_argument("--ssh-config", default="", help="ssh configuration file (ssh -F)")
    hosts.add_argument("--identity", default="", help="private key file (ssh -i)")
    commands.add_parser("check", parents=[hosts], help="connect and compare the engine versions")
    run = commands.add_parser("run", parents=[hosts], help="send the inputs, run there, stream progress, fetch results")
    run.add_argument("--job-file", type=Path, help="where to keep the job's record (default ~/.deepmed/remote-jobs/)")
    run.add_argument("--detach", action="store_true", help="start it and return (follow later with attach)")
    run.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then the deepmed command, e.g. -- train ...")
    attach = commands.add_parser("attach", help="stream a remote job's progress again and fetch its results")
    attach.add_argument("job_file", type=Path)
    attach.add_argument("--from-line", type=int, help="first progress line to show (default: after those seen)")
    for name, text in (("stop", "ask a remote training to checkpoint and end"), ("cancel", "end a remote job at once")):
        commands.add_parser(name, help=text).add_argument("job_file", type=Path)
    worker = commands.add_parser("worker", help="(the remote side, started over ssh)")
    worker.add_argument("action", choices=["hello", "prepare", "launch", "supervise", "follow", "stop", "cancel",
                                           "outputs"])
    worker.add_argument("values", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    from deepmed.remote import client

    if args.remote_command == "worker":
        return _worker(args.action, args.values)
    if args.remote_command in ("check", "run"):
        host = _host(args)
        if args.remote_command == "check":
            info = host.check_version(__import__("deepmed").__version__)
            print(f"{host.destination}: deepmed {info['version']}, Python {info['python']}, {info['platform']}")
            return 0
        arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
        if not arguments:
            raise DeepMedError("remote run: expected the deepmed command after --, e.g. -- train --dataset d.json ...")
        job = client.submit(host, arguments, args.job_file)
        if args.detach:
            print(f"started {job.job_id} on {host.destination}; follow it: deepmed remote attach {job.job_file}")
            return 0
        return client.follow(job)
    job = client.RemoteJob.load(args.job_file)
    if args.remote_command == "attach":
        return client.follow(job, from_line=args.from_line)
    if args.remote_command == "stop":
        client.request_stop(job)
        return 0
    print("cancelled" if client.cancel(job) else "already ended")
    return 0


def _host(args: argparse.Namespace):
    from deepmed.remote.host import RemoteHost

    return RemoteHost(host=args.host, user=args.user, port=args.port, python=args.python, workdir=args.workdir,
                      ssh_config=args.ssh_config, identity=args.identity)


def _worker(action: str, values: list[str]) -> int:
    from deepmed.remote import worker

    if action == "hello":
        print(json.dumps(worker.hello()))
    elif action == "prepare":
        print(json.dumps({"folder": str(worker.prepare(*values))}))
    elif action == "launch":
        folder, _, arguments = values[0], values[1], values[2:]
        print(json.dumps({"pid": worker.launch(Path(folder), arguments)}))
    elif action == "supervise":
        return worker.supervise(Path(values[0]))
    elif action == "follow":
        from_line = int(values[2]) if values[1:2] == ["--from-line"] else 0
        return worker.follow(Path(values[0]), from_line)
    elif action == "stop":
        worker.stop(Path(values[0]))
    elif action == "cancel":
        print(json.dumps(worker.cancel(Path(values[0]))))
    elif action == "outputs":
        print(json.dumps(worker.outputs(Path(values[0]), values[1:])))
    sys.stdout.flush()
    return 0
