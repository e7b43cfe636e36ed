"""The one exception hfgen raises for data that cannot be found, read or used."""


class DatasetError(Exception):
    """A dataset reference, file or column that hfgen cannot use.

    The message always says what was wrong, where (path, split, column, recipe key) and what
    would fix it, so it can be shown to the user as is.
    """
