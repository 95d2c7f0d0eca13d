"""The suite's locustfile: wiring only.

    locust -f locustfile.py --scenario sessions [--time-scale 0.1] [-H http://127.0.0.1:3000]

Without a host, the embedded reference gateway is started on a free loopback port. The
scenarios are in conf/scenarios/; see README.md.
"""

from locust import events

from suite.options import add_options
from suite.run import SuiteRun
from users.messages import MessageSender
from users.sessions import SessionCreator
from users.webhooks import WebhookSender

USER_CLASSES = {cls.__name__: cls for cls in (SessionCreator, WebhookSender, MessageSender)}


@events.init_command_line_parser.add_listener
def _options(parser, **_):
    add_options(parser)


@events.init.add_listener
def _install(environment, **_):
    SuiteRun(environment, USER_CLASSES)
