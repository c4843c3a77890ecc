"""Replication between registries (docs/replication.md): rules that push this registry's
content to another one or pull another one's into this one.

``rules`` (pure) selects and maps names, ``semver`` reads version ranges, ``endpoints``
speaks to either side (this registry's store, or a remote over the distribution API),
``copier`` copies an artifact with everything it references, ``consumer`` follows the
event outbox for push rules, ``sync`` runs a full pass, ``scheduler`` runs passes on
their interval under a lease per rule, ``status`` and ``metrics`` report, and ``service``
is what ``create_app`` wires.

Nothing is imported here: registry.config reads ``semver`` while it is being imported
itself, and this package's other modules import the configuration.
"""
