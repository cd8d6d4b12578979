"""Run All past an unsolved exercise: which cells of a student notebook may fail, tagged so that it goes on.

JupyterLab's Run All (and nbclient) stop at the first cell that raises, unless the cell is tagged
`raises-exception`. In a student notebook three kinds of cell raise until the learner has done the work:
an exercise's solution cell (a stub), its check cell, and every cell downstream that uses what the
exercise defines, directly or through a value computed from it (a demonstration that trains with the
learner's encoder, say). `continue_past` tags exactly those, found by reading the code of the instructor
and student versions side by side: the names a stub binds, and the names only the worked solution binds,
are followed statement by statement through what later cells read and bind. A grader still scores every
failing check 0; the learner still sees the rest of the notebook.
"""

from __future__ import annotations

import ast
import symtable

from course_lib.ipynb import nbgrader, source

CONTINUE_TAG = "raises-exception"


def _reads(table: symtable.SymbolTable) -> set[str]:
    """Global names a statement reads: at its top level, or free in a function or class it defines."""
    own = table.get_type() == "module"
    names = {s.get_name() for s in table.get_symbols() if s.is_referenced() and (own or s.is_global())}
    for child in table.get_children():
        names |= _reads(child)
    return names


def _loop_targets(statement: ast.stmt) -> set[str]:
    """Names a statement binds before its body reads them: `for` targets and `with ... as` names."""
    targets = [node.target for node in ast.walk(statement) if isinstance(node, (ast.For, ast.AsyncFor))]
    targets += [item.optional_vars for node in ast.walk(statement) if isinstance(node, (ast.With, ast.AsyncWith))
                for item in node.items if item.optional_vars is not None]
    return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}


def _tables(code: str) -> list[tuple[ast.stmt, symtable.SymbolTable]]:
    """Each top-level statement of a cell with its symbol table; none for a cell that does not parse (IPython
    magics, say)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return [(statement, symtable.symtable(ast.unparse(statement), "<cell>", "exec")) for statement in tree.body]


def statements(code: str) -> list[tuple[set[str], set[str]]]:
    """(global names read, names bound) of each top-level statement of a cell, in order."""
    return [(_reads(table) - _loop_targets(statement),
             {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()})
            for statement, table in _tables(code)]


def _bound(code: str) -> set[str]:
    return set().union(*(bound for _, bound in statements(code)))


def _imported(code: str) -> set[str]:
    """Names a cell binds by its top-level imports (which a stubbed exercise cell still runs)."""
    return {s.get_name() for statement, table in _tables(code) if isinstance(statement, (ast.Import, ast.ImportFrom))
            for s in table.get_symbols() if s.is_imported()}


def dependent_cells(instructor: list[dict], student: list[dict]) -> list[int]:
    """Indices of the code cells that raise in the student version while its exercises are unsolved.

    instructor, student: the cells of the two versions of one notebook (the same cells, solutions stubbed in
    the second). An exercise's cells raise, and make unusable what the stub binds (but for its imports) and
    what only the worked solution binds (unless bound before); any other cell raises from its first
    statement that reads an unusable name, and what it binds from there on is unusable too.
    """
    unusable: set[str] = set()
    bound_so_far: set[str] = set()
    found = []
    for index, (cell, stub) in enumerate(zip(instructor, student, strict=True)):
        if cell["cell_type"] != "code":
            continue
        if nbgrader(cell).get("solution") or nbgrader(cell).get("grade"):
            stubbed, imported = _bound(source(stub)), _imported(source(stub))
            unusable = (unusable - imported) | (stubbed - imported) | (_bound(source(cell)) - stubbed - bound_so_far)
            bound_so_far |= stubbed
            found.append(index)
            continue
        raises = False
        for read, bound in statements(source(cell)):
            raises = raises or bool(read & unusable)
            unusable = unusable | bound if raises else unusable - bound
            bound_so_far |= bound
        if raises:
            found.append(index)
    return found


def continue_past(nb: dict, instructor: dict, student: dict) -> dict:
    """Tag the cells of `nb` (either version, in place) that raise in `student` while its exercises are
    unsolved, so that Run All goes on past them; returns `nb`."""
    for index in dependent_cells(instructor["cells"], student["cells"]):
        tags = nb["cells"][index].setdefault("metadata", {}).setdefault("tags", [])
        if CONTINUE_TAG not in tags:
            tags.append(CONTINUE_TAG)
    return nb


__all__ = ["CONTINUE_TAG", "continue_past", "dependent_cells", "statements"]
