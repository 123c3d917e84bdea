"""`kdlang lsp`: the language server editors talk to over stdio (pygls + lsprotocol).

One module per feature: `positions` (the one place kdlang spans become LSP ranges), `documents`
(open files and what each check learnt about them), `diagnostics`, `navigation` (definition and
references), `hover`, `completion`, `formatting`, `outline` (document symbols); `server` wires
them to the protocol. The features read what the checker (`kdlang.check`) already computes: the
server never parses or types a recipe its own way.
"""
