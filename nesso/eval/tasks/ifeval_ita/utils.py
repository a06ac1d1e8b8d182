"""IFEval scoring for ifeval-ita: the same checkers and aggregation as lm-eval's own ``ifeval`` task."""

from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results

__all__ = ["agg_inst_level_acc", "process_results"]
