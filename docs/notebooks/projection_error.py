# %% [markdown]
# # projection_error

# %%
print(1 + 1)
