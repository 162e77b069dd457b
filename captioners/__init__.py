"""captioners"""
