"""Incompatible-QoS events as a user can act on them: the topic, both policies and the fix.

DDS reports only which policy kind failed to match; for the two that decide whether a sensor stream
flows at all (reliability, durability) the remote side's value follows from ours, because each has
only two values and exactly one pairing is incompatible.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

_RELIABILITY_FIX = {
    "subscription": "the publisher is best effort and this subscription asks for reliable: set "
                    "input_qos_reliability: best_effort (the default, REP-2003), which matches every publisher",
    "publisher": "the subscriber asks for reliable and depth_node publishes best effort: set "
                 "output_qos_reliability: reliable (the default), which matches every subscriber",
}
_DURABILITY_FIX = ("the subscriber asks for transient_local (latched) and depth_node's streams are volatile: "
                   "subscribe with durability volatile (sensor streams are never latched)")


def _policy_name(kind: Any) -> str:
    name = getattr(kind, "name", None)
    if name is None:  # older rclpy: a plain int
        try:
            from rclpy.qos import QoSPolicyKind

            name = QoSPolicyKind(int(kind)).name
        except (ImportError, ValueError):
            name = str(kind)
    name = str(name).lower()
    return name.removeprefix("rmw_qos_policy_")  # QoSPolicyKind.RELIABILITY's name in some releases


def incompatible_qos_message(topic: str, role: str, ours: QoSProfile, policy_kind: Any) -> str:
    """One line for an incompatible-QoS event on one of the node's publishers or subscriptions (``role``)."""
    policy = _policy_name(policy_kind)
    other = "subscriber" if role == "publisher" else "publisher"
    if policy == "reliability":
        mine = "reliable" if ours.reliability == ReliabilityPolicy.RELIABLE else "best_effort"
        theirs = "best_effort" if mine == "reliable" else "reliable"
        return (f"incompatible QoS on {topic}: this {role} is {mine}, a {other} is {theirs}, so they never "
                f"connect; {_RELIABILITY_FIX[role]}")
    if policy == "durability":
        mine = "transient_local" if ours.durability == DurabilityPolicy.TRANSIENT_LOCAL else "volatile"
        theirs = "volatile" if mine == "transient_local" else "transient_local"
        return (f"incompatible QoS on {topic}: this {role} is {mine}, a {other} is {theirs}, so they never "
                f"connect; {_DURABILITY_FIX}")
    return (f"incompatible QoS on {topic}: this {role} and a {other} disagree on the {policy} policy, so they "
            f"never connect; give the {other} this {role}'s {policy} (depth_node: keep last, volatile, no "
            "deadline, automatic liveliness)")
