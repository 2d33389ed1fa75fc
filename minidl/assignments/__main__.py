"""``python -m minidl.assignments {build,grade,check,autograder} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minidl.assignments._commands import build, build_autograder, check, grade_folder, solution_folder
from minidl.assignments._grade import Grade, load_assignment


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as err:  # a wrong folder or a bad grading.py
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minidl.assignments",
        description="Build student editions, grade submissions and check assignments (docs/assignments.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("build", help="write the student edition (solutions stripped) into OUT")
    p.add_argument("assignment", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    p = commands.add_parser("grade", help="grade a submission: console report, and results.json with --results")
    p.add_argument("assignment", type=Path)
    p.add_argument("--submission", type=Path, default=None, help="the student's folder (default: the assignment's)")
    p.add_argument("--results", type=Path, default=None, help="write Gradescope's results.json here")
    p.add_argument("--quick", action="store_true", help="fewer drawn configurations per check")
    p.add_argument(
        "--time-limit",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds each check may run (default: the assignment's, 60 s unless it says otherwise)",
    )
    p = commands.add_parser("check", help="solutions must score 100 %%, stubs 0, every planted bug must lose points")
    p.add_argument("assignments", type=Path, nargs="+")
    p.add_argument("--quick", action="store_true", help="fewer drawn configurations per check")
    p.add_argument("--show-bug", default=None, help="also print the grader's report on the planted bug of this name")
    p = commands.add_parser("autograder", help="write Gradescope's autograder.zip into OUT")
    p.add_argument("assignment", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--wheel", type=Path, default=None, help="a minidl wheel to put in the zip for setup.sh")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    args = parser.parse_args(argv)

    if args.command == "build":
        for path in build(load_assignment(args.assignment), args.out, force=args.force):
            print(f"wrote {path}")
        return 0
    if args.command == "grade":
        return _grade(args)
    if args.command == "check":
        ok = True
        for folder in args.assignments:
            outcome = check(load_assignment(folder), quick=args.quick)
            print(outcome)
            if args.show_bug in outcome.bug_reports:
                print(f"\nthe grader's report on the planted bug {args.show_bug!r}:")
                print(outcome.bug_reports[args.show_bug])
            ok &= outcome.ok
        return 0 if ok else 1
    zip_path = build_autograder(load_assignment(args.assignment), args.out, force=args.force, wheel=args.wheel)
    print(f"wrote {zip_path}: upload it as the Gradescope autograder")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _grade(args: argparse.Namespace) -> int:
    """Print each check's line as it finishes and rewrite results.json after each, so a run stopped midway still
    leaves the scores it had."""
    assignment = load_assignment(args.assignment)
    shown, failed_writes = 0, []
    print(assignment.title, flush=True)

    def write(grade: Grade) -> None:
        try:
            grade.write_json(args.results)
        except OSError as err:  # Gradescope would show no score: say so, and exit non-zero
            failed_writes.append(err)
            print(f"error: could not write {args.results}: {err}", file=sys.stderr, flush=True)

    def on_result(grade: Grade) -> None:
        nonlocal shown
        for result in grade.results[shown:]:
            print(result.line(grade.width), flush=True)
        shown = len(grade.results)
        if args.results is not None:
            write(grade)

    limits = {"quick": args.quick, "time_limit": args.time_limit, "on_result": on_result}
    if args.submission is None:  # the solutions themselves
        with solution_folder(assignment) as solutions:
            result = grade_folder(assignment, solutions, **limits)
    else:
        result = grade_folder(assignment, args.submission, **limits)
    print(result.total_line())
    if args.results is None:
        return 0
    failed_writes.clear()
    write(result)  # (also when there are no checks)
    if failed_writes:
        return 1
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
