"""phantom.simulate"""
