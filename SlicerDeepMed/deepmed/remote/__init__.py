"""Run engine workers on another machine over the system's ``ssh`` (docs/remote.md).

``host``: the typed remote machine and the ssh / rsync / scp command lines; ``staging``: which arguments are
files to send and results to bring back; ``worker``: the remote side (detached worker, progress log, stop);
``client``: the local side (``deepmed remote run / attach / stop / cancel``).
"""
