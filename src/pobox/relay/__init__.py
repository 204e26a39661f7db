"""Outbound mail: the durable queue, its sender (smarthost or MX), DSN bounces and DKIM signing.

See docs/relay.md and docs/decisions/outbound-queue.md.
"""
