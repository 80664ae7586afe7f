"""The LLM wing: facet summaries of every conversation, and LLM names for every node.

One module per job, each importing only those above it in this list:

========================  ======================================================================
``types``                 the records: :class:`~bailclio.stages.NodeName`, leaf evidence, the
                          naming result, a candidate text
``delimiters``            the one registry of prompt delimiter tags, the one escape, tagged lists
``prompts``               the prompt texts (facets, names, retries, revision, assignment)
``answers``, ``degeneracy``  cleaning a text answer; does a facet's set of answers still inform
``facets``                facet schema, reply model and request of one conversation
``facet_extract``         every facet of every conversation asked (one call per distinct one)
``replies``               what a naming reply must be, its cleaning, the call that asks for them
``requests``              the leaf and parent naming requests, and their retry variants
``grounder``              is a text about its own members (embedding check, reconstruction)
``grounding``             each LLM name checked, retried once, else the keyphrase name
``fallback``, ``revision``  Clio's reconstruction check as one round of revision
``namer``                 names of every level of the structural hierarchy
``proposals``, ``assignment``, ``hierarchy``  Clio's LLM-built hierarchy
``report``, ``stage``     the LLM stage of ``bailclio run`` and what it reports
========================  ======================================================================
"""
