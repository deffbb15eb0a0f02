"""phantom.registry"""
