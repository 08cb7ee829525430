"""The docstring examples of mgpo_datasets, mgpo_tools, mgpo_agents and the emergence benchmark, run under their import names.

(pytest's --doctest-modules would import ``envs/``, ``tools/`` and ``agents/`` by their folder
names, a second copy of each module next to the installed one.)
"""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("mgpo_datasets", "mgpo_tools", "mgpo_agents", "emergence")


def _modules() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [info.name for info in pkgutil.iter_modules(package.__path__, package_name + ".")]
    return sorted(names)


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module_name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {module_name} failed (see the output above)"
