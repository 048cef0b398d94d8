"""The app's pages (thin views over core/) and what they share.

The folder is not named pages/: Streamlit treats a pages/ folder next to the entry point
as a legacy multipage app in every session that starts before st.navigation has run
once in the server process, and shows its automatic page list instead of the app's.
"""
