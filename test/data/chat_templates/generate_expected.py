#!/usr/bin/env python3
"""Renders the chat templates and the language cases here with Python's
jinja2 set up as Hugging Face transformers sets it up for chat templates
(transformers.utils.chat_template_utils._compile_jinja_template), and writes
expected.json. The C++ tests (test/unit/runtime/chat) compare against the
committed expected.json; run this only when a case or template changes:

    python3 test/data/chat_templates/generate_expected.py

Needs jinja2 (3.1.6 was used).
"""
import glob
import json
import os

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))


class AssistantTracker(Extension):
    # transformers' {% generation %} tag; here it only renders its body.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def render(env, source, variables):
    try:
        return {"output": env.from_string(source).render(**variables)}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception's message is checked exactly; other errors only
        # as errors (the messages differ).
        kind = "raise" if type(e) is jinja2.exceptions.TemplateError else "error"
        return {kind: str(e)}
    except Exception as e:  # TypeError, ZeroDivisionError, ...
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    env = environment()
    conversations = json.load(open(os.path.join(HERE, "conversations.json"), encoding="utf-8"))
    templates = {}
    for path in sorted(glob.glob(os.path.join(HERE, "*.jinja"))):
        name = os.path.basename(path)[:-len(".jinja")]
        source = open(path, encoding="utf-8", newline="").read()
        results = {}
        for case in conversations["cases"]:
            # What transformers passes: messages, tools, documents,
            # add_generation_prompt and the special tokens.
            variables = {"messages": case["messages"], "tools": case.get("tools"), "documents": None,
                         "add_generation_prompt": case["add_generation_prompt"],
                         "bos_token": conversations["bos_token"], "eos_token": conversations["eos_token"]}
            results[case["name"]] = render(env, source, variables)
        templates[name] = results
    language = {}
    for case in json.load(open(os.path.join(HERE, "language_cases.json"), encoding="utf-8")):
        language[case["name"]] = render(env, case["template"], case["variables"])
    out = {"generator": "generate_expected.py, jinja2 " + jinja2.__version__,
           "templates": templates, "language": language}
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
