"""LAR: label alignment and reassignment for cross-domain NER (ner-align).

(Placeholder in the reassign branch; the aligntable branch owns this file.)
"""
