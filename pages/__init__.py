"""The app's pages (thin views over core/) and what they share.

Streamlit runs a folder named pages/ as a legacy multipage app until st.navigation is
first called in the server process. If the first request is a deep link (/results),
it would run that page file alone, without streamlit_app.py's navigation and sidebar,
and stay in that mode. Leaving the legacy mode and rerunning once, when this package is
first imported, sends every run through streamlit_app.py. (Streamlit has no public
switch for this; the attribute below is the one st.navigation itself sets.)
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

if PagesManager.uses_pages_directory:
    PagesManager.uses_pages_directory = False
    if st.runtime.exists():
        st.rerun()
