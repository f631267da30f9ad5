"""``deepmed infer``: arrives with the training engine."""


def add_parser(subparsers) -> None:
    pass
