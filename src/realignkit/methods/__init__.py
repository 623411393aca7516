"""Repair methods. Each module registers one method with `register_method` (see registry.py for the contract).

Modules are imported on demand by `registry.get_method(name)` (a repair only pays for the method it runs);
`registry.method_names()` imports all of them.
"""
