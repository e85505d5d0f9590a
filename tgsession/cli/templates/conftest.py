# tgsession's pytest plugin: the fake_telegram fixture (an offline Telegram), and async
# tests run without any pytest configuration.
pytest_plugins = ["tgsession.testing.pytest_plugin"]
