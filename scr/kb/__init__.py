"""Knowledge base: fact records with history, ingestion formats, vector indexes, embeddings."""

from scr.kb.ingest import IngestError, ParsedFile, parse_file, split_sentences, text_lines
from scr.kb.records import Fact, FactEvent, FactHit, FactInput, fact_key
from scr.kb.store import FactNotFound, IncompatibleStore, IngestReport, KBError, KnowledgeBase

__all__ = [
    "Fact", "FactEvent", "FactHit", "FactInput", "FactNotFound", "IncompatibleStore", "IngestError",
    "IngestReport", "KBError", "KnowledgeBase", "ParsedFile", "fact_key", "parse_file", "split_sentences",
    "text_lines",
]
