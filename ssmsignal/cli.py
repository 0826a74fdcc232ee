"""Command line: ``ssmsignal demo | fit | predict | generate | bench`` (being written)."""
import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ssmsignal")
    parser.add_argument("command", choices=["demo"])
    parser.parse_args(argv)
    raise SystemExit("ssmsignal demo: the estimators are not built yet")
