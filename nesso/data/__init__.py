"""Pretraining data: recipes (``recipe``), document sources (``sources``), tokenisation to datatrove-layout
shards (``tokenize``, ``shards``) and weighted, seeded mixing of training windows (``mix``)."""

from nesso.data.recipe import DataRecipe, Section, SourceSpec, read_recipe_file
from nesso.data.shards import Shard, ShardWriter, TokenStream, token_dtype

__all__ = ["DataRecipe", "Section", "Shard", "ShardWriter", "SourceSpec", "TokenStream", "read_recipe_file",
           "token_dtype"]
