"""Turn docker/Dockerfile into a bash script of the same steps, for docker/check_recipe.sh.

    python3 docker/dockerfile_steps.py docker/Dockerfile CONTEXT [NAME=VALUE ...]

Handles the instructions the recipe uses: ARG (NAME=VALUE pairs act as --build-arg), FROM
(printed as a comment, the caller provides the root), ENV, WORKDIR, COPY . DEST (from the
folder CONTEXT inside the root), RUN (shell form, run by /bin/sh -c like Docker) and CMD
(ignored). Anything else is an error naming the line, so the check never passes a recipe it
did not run. Variables expand as Docker expands them: ${NAME} from ARG and ENV.
"""
import re
import shlex
import sys


# PATH of the debian:bookworm image, which ENV PATH=...:${PATH} extends.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"



COPIED = ".reid-copied"   # the files the last COPY wrote into DEST (NUL-separated)


def copy_step(context, dest):
    """`COPY . DEST` over a root that may hold an earlier COPY (check_recipe's CHECK_REUSE):
    first remove the files that COPY wrote (its manifest), as Docker starts the layer anew,
    so a file deleted from the repository does not linger; then copy and list anew."""
    return ("mkdir -p {d} && if [ -f {d}/{m} ]; then (cd {d} && xargs -0 rm -f < {m}); fi"
            " && cp -a {c}/. {d} && (cd {c} && find . -type f -print0) > {d}/{m}"
            ).format(d=dest, c=context, m=COPIED)

def logical_lines(text):
    """(line number, instruction text) with backslash continuations joined, comments dropped."""
    out, buf, start = [], "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not buf:
            start = no
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    return out


def expand(value, env):
    def sub(m):
        return env.get(m.group(1) or m.group(2), "")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, value)


def words(args, env):
    """KEY=VALUE pairs of ARG/ENV, quotes removed and ${VAR} expanded."""
    pairs = {}
    for item in shlex.split(args):
        key, _, value = item.partition("=")
        pairs[key] = expand(value, env)
    return pairs


def to_bash(dockerfile, context, build_args):
    env, script = {}, ["set -euo pipefail"]
    for no, line in logical_lines(open(dockerfile).read()):
        op, _, args = line.strip().partition(" ")
        op = op.upper()
        where = "%s:%d" % (dockerfile, no)
        if op == "ARG":
            for key, value in words(args, env).items():
                env[key] = build_args.get(key, value)
        elif op == "FROM":
            env = {"PATH": BASE_PATH}  # ARGs before FROM only parameterise FROM
            script.append("# FROM %s (%s)" % (expand(args, env), where))
        elif op == "ENV":
            for key, value in words(args, env).items():
                env[key] = value
                script.append("export %s=%s" % (key, shlex.quote(value)))
        elif op == "WORKDIR":
            script.append("mkdir -p %s && cd %s" % ((shlex.quote(expand(args, env)),) * 2))
        elif op == "COPY":
            src, dest = shlex.split(expand(args, env))
            if src != ".":
                sys.exit("%s: only `COPY . DEST` is supported" % where)
            script.append(copy_step(context, shlex.quote(dest)))
        elif op == "RUN":
            # Docker passes the ARGs of the stage to RUN as environment variables.
            assign = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items()))
            script.append("echo %s >&2" % shlex.quote("==> RUN (%s)" % where))
            script.append("env %s /bin/sh -c %s" % (assign, shlex.quote(args)))
        elif op == "CMD":
            continue
        else:
            sys.exit("%s: instruction %s is not supported by docker/dockerfile_steps.py" % (where, op))
    return "\n".join(script) + "\n"


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    build_args = dict(a.split("=", 1) for a in argv[2:])
    sys.stdout.write(to_bash(argv[0], argv[1], build_args))


if __name__ == "__main__":
    main(sys.argv[1:])
