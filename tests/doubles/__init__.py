"""Test doubles of the services the bot talks to, each a local aiohttp server on 127.0.0.1.

* `tests.doubles.telegram`: the Bot API (`FakeTelegram`) and a small simulated Telegram world;
* `tests.doubles.dashscope`: DashScope's aitryon models with OSS temp storage (`FakeDashScope`);
* `tests.doubles.server`: the start/stop code both share (`LocalServer`, ``async with``).
"""
