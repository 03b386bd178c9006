"""kmesh_lab: the lab around kmesh_node — pods, load, results, report.

Small helpers the Ansible roles call (`python -m kmesh_lab.<module>`), one job per module.
"""
