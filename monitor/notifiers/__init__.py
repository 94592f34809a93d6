"""Alert channels by `kind:`: the registry, building a notifier from its config, and test sends."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

from monitor.notifiers.base import ChannelConfig, DeliveryError, Notifier
from monitor.notifiers.im import AppriseNotifier
from monitor.notifiers.local import ConsoleNotifier, FileNotifier
from monitor.notifiers.mail import EmailNotifier
from monitor.notifiers.webhook import WebhookNotifier
from monitor.render import AlertMessage

__all__ = [
    "KINDS",
    "ChannelConfig",
    "DeliveryError",
    "Notifier",
    "build",
    "kind_help",
    "sample_alert",
    "send_test",
]

KINDS: dict[str, type[Notifier]] = {
    cls.kind: cls
    for cls in (EmailNotifier, WebhookNotifier, AppriseNotifier, ConsoleNotifier, FileNotifier)
}


def kind_help() -> dict[str, str]:
    """Return each kind's help text (its class docstring), by kind name."""
    return {kind: inspect.cleandoc(cls.__doc__ or "") for kind, cls in KINDS.items()}


def build(name: str, config: ChannelConfig) -> Notifier:
    """Return the notifier of channel `name` for its validated config."""
    try:
        cls = KINDS[config.kind]
    except KeyError:
        raise ValueError(f"channel {name!r}: unknown kind {config.kind!r}") from None
    if not isinstance(config, cls.config_model):
        raise TypeError(f"channel {name!r}: config is not a {cls.config_model.__name__}")
    return cls(name, config)


def sample_alert(name: str, now: datetime | None = None) -> AlertMessage:
    """Return the alert `monitor notify-test` sends on channel `name`."""
    now = now or datetime.now(UTC)
    return AlertMessage(
        idempotency_key="test-" + now.strftime("%Y%m%d%H%M%S%f"),
        kind="test",
        title="渠道 " + name + " 测试消息：收到即表示配置正确",
        url="https://www.gov.cn/",
        source_id="test",
        source_name="测试",
        published_at=now,
        topics=[
            {
                "name": "biomed_coop",
                "label": "生物医药合作",
                "score": 1.0,
                "matched": {"合作": ["合作协议"], "生物医药": ["生物医药"]},
                "evidence": "示例：某市与某生物医药企业签署战略合作协议。",
            }
        ],
        parties=["示例单位"],
        excerpt="这是一条测试告警，用于确认告警渠道可以送达。",
    )


def send_test(name: str, config: ChannelConfig) -> AlertMessage:
    """Send a test alert on channel `name`; return it, or raise DeliveryError on failure."""
    message = sample_alert(name)
    build(name, config).send(message)
    return message
