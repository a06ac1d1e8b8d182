"""Evaluation: the card's lm-evaluation-harness tables (``nesso.eval.lm``, ``nesso.eval.table``) and a bilingual
function-calling benchmark scored with the BFCL-style AST checker (``nesso.eval.fc``)."""
